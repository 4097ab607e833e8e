#!/usr/bin/env bash
# Builds Weft's guest components into
#   components/target/wasm32-wasip2/release/<crate>.wasm
#
# Usage: bash components/build.sh [crate...]      (default: every component)
#
# Picks a toolchain itself and says which and why:
#   rustup  rustup's toolchain with its prebuilt wasm32-wasip2 std (installed,
#           or added now by `rustup target add`, bounded to 30 s; a failed add
#           is not retried for a day);
#   debian  Debian's rustc-web/cargo-web, building std for wasm32-wasip2 from
#           rust-web-src (-Zbuild-std) against wasi-libc and linking with
#           Debian's lld-NN; installs those packages when missing (as root
#           only, else it prints the command).
# WEFT_WASM_ROUTE=rustup|debian forces a route.
#
# Cargo's own caching makes a run with nothing changed take seconds; nothing
# here cleans.
set -euo pipefail

COMPONENTS=(iam lgm faulty bpm nsm buildings workflows alarmgen alarms hostile)
TARGET=wasm32-wasip2
DEBIAN_PACKAGES=(rustc-web cargo-web rust-web-src rust-web-llvm wasi-libc)
DEBIAN_STD_SRC=/usr/lib/rustlib/src/rust/library
DEBIAN_WASI_LIBC=/usr/lib/wasm32-wasi
COMPONENT_MAGIC="00 61 73 6d 0d 00 01 00" # "\0asm", version 0x0d, layer 1

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
out_dir="$here/target/$TARGET/release"
ADD_FAILED_MARK="$here/target/.rustup-target-add-failed"

say() { echo "[build] $*"; }
die() {
    echo "[build] error: $*" >&2
    exit 1
}

# --- which crates -----------------------------------------------------------

crates=("$@")
if [[ ${#crates[@]} -eq 0 ]]; then
    crates=("${COMPONENTS[@]}")
fi
for crate in "${crates[@]}"; do
    known=false
    for component in "${COMPONENTS[@]}"; do
        if [[ $crate == "$component" ]]; then
            known=true
        fi
    done
    $known || die "unknown component '$crate' (known: ${COMPONENTS[*]})"
done

# --- which toolchain --------------------------------------------------------

rustup_has_target() {
    rustup target list --installed 2>/dev/null | grep -qx "$TARGET"
}

# Sets `route` and `reason`; `forced` is the requested route, or empty.
choose_route() {
    local forced="$1"
    case "$forced" in
    "" | rustup | debian) ;;
    *) die "WEFT_WASM_ROUTE must be 'rustup' or 'debian', not '$forced'" ;;
    esac

    if [[ $forced == debian ]]; then
        route=debian reason="forced by WEFT_WASM_ROUTE=debian"
        return 0
    fi
    if ! command -v rustup >/dev/null 2>&1; then
        if [[ $forced == rustup ]]; then
            die "WEFT_WASM_ROUTE=rustup, but rustup is not installed"
        fi
        route=debian reason="rustup is not installed"
        return 0
    fi
    if rustup_has_target; then
        route=rustup reason="rustup has the $TARGET target installed"
        if [[ $forced == rustup ]]; then
            reason="forced by WEFT_WASM_ROUTE=rustup; $reason"
        fi
        return 0
    fi
    # A failed add is not retried for a day, so that an offline machine does
    # not pay the 30 s on every build.
    if [[ -z $forced && -n $(find "$ADD_FAILED_MARK" -mmin -1440 2>/dev/null) ]]; then
        route=debian reason="rustup lacks $TARGET and 'rustup target add' failed within the last day (delete ${ADD_FAILED_MARK#"$here"/} to retry)"
        return 0
    fi
    say "rustup lacks $TARGET; trying: timeout 30 rustup target add $TARGET"
    if timeout 30 rustup target add "$TARGET" >&2 && rustup_has_target; then
        rm -f "$ADD_FAILED_MARK"
        route=rustup reason="rustup target add $TARGET succeeded"
        return 0
    fi
    mkdir -p "$(dirname "$ADD_FAILED_MARK")"
    date -u +%Y-%m-%dT%H:%M:%SZ >"$ADD_FAILED_MARK"
    if [[ $forced == rustup ]]; then
        die "WEFT_WASM_ROUTE=rustup, but 'rustup target add $TARGET' failed or timed out"
    fi
    route=debian reason="rustup lacks $TARGET and 'rustup target add' failed or timed out after 30 s"
}

debian_ready() {
    # -x follows links: a rust-lld pointing at an absent lld-NN is not ready.
    [[ -x /usr/bin/rustc && -x /usr/bin/cargo && -x /usr/bin/rust-lld &&
        -d $DEBIAN_STD_SRC && -d $DEBIAN_WASI_LIBC ]]
}

# wasm-component-ld links with rust-lld, which rust-web-llvm ships as a link
# to lld-NN (its LLVM's version) without depending on Debian's lld-NN package.
debian_lld_package() {
    local target
    target="$(readlink /usr/bin/rust-lld 2>/dev/null || true)"
    target="${target##*/}"
    if [[ $target == lld-* ]]; then
        echo "$target"
    fi
}

apt_install() {
    if ! DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y "$@"; then
        say "apt-get install failed; refreshing the package lists and retrying"
        timeout 300 apt-get update || die "apt-get update failed"
        DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y "$@" ||
            die "'apt-get install -y $*' failed"
    fi
}

ensure_debian_toolchain() {
    if debian_ready; then
        return 0
    fi
    local packages=("${DEBIAN_PACKAGES[@]}") lld
    lld="$(debian_lld_package)"
    if [[ -n $lld ]]; then
        packages+=("$lld")
    fi
    if [[ $(id -u) -ne 0 ]]; then
        local then_lld=""
        if [[ -z $lld ]]; then
            then_lld=", then the lld-NN package that /usr/bin/rust-lld points to"
        fi
        die "Debian's Rust for wasm is incomplete (/usr/bin/rustc, /usr/bin/cargo, /usr/bin/rust-lld, $DEBIAN_STD_SRC or $DEBIAN_WASI_LIBC is missing); run as root: apt-get install -y ${packages[*]}$then_lld"
    fi
    say "installing Debian's Rust for wasm: apt-get install -y ${packages[*]}"
    apt_install "${packages[@]}"
    if [[ ! -x /usr/bin/rust-lld ]]; then
        lld="$(debian_lld_package)"
        [[ -n $lld ]] || die "/usr/bin/rust-lld is missing after installing ${packages[*]}"
        say "installing $lld, which /usr/bin/rust-lld points to"
        apt_install "$lld"
    fi
    if ! debian_ready; then
        die "installed ${packages[*]}, but the toolchain is still incomplete"
    fi
}

choose_route "${WEFT_WASM_ROUTE:-}"
say "route: $route ($reason)"

cargo_args=(build --release --target "$TARGET" --target-dir "$here/target")
for crate in "${crates[@]}"; do
    cargo_args+=(-p "$crate")
done

case "$route" in
rustup)
    # The toolchain's own cargo and rustc, whatever comes first in PATH.
    cargo_bin="$(rustup which cargo)"
    RUSTC="$(rustup which rustc)"
    export RUSTC
    ;;
debian)
    ensure_debian_toolchain
    cargo_bin=/usr/bin/cargo
    # Debian's cargo runs whichever rustc comes first in PATH (rustup's
    # proxies in ~/.cargo/bin, say); pin its own. std is built from
    # rust-web-src, which needs the nightly-only -Zbuild-std.
    export PATH="/usr/bin:$PATH"
    export RUSTC=/usr/bin/rustc
    export RUSTC_BOOTSTRAP=1
    export RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }-L $DEBIAN_WASI_LIBC"
    cargo_args+=("-Zbuild-std=std,panic_abort")
    ;;
esac

say "toolchain: $("$RUSTC" --version) / $("$cargo_bin" --version)"
say "building ${crates[*]}: $cargo_bin ${cargo_args[*]}"
started=$SECONDS
"$cargo_bin" "${cargo_args[@]}" || die "cargo build failed (route: $route)"
say "cargo finished in $((SECONDS - started)) s"

# --- check the output -------------------------------------------------------

for crate in "${crates[@]}"; do
    wasm="$out_dir/${crate//-/_}.wasm"
    [[ -f $wasm ]] || die "$wasm was not produced"
    magic="$(od -An -tx1 -N8 "$wasm" | xargs)"
    [[ $magic == "$COMPONENT_MAGIC" ]] ||
        die "$wasm is not a WebAssembly component (header: $magic; want $COMPONENT_MAGIC)"
    say "ok: ${wasm#"$here"/} ($(wc -c <"$wasm") bytes, a component)"
done
