# Weft — `just build`, `just run`, `just test`.
set shell := ["bash", "-euo", "pipefail", "-c"]

# Show the recipes.
default:
    @just --list

# Build the guest components and the host (release).
build: build-components build-host

# Build guest components (all, or the ones named); picks the wasm toolchain itself.
build-components *names:
    bash components/build.sh {{names}}

# Build the host binary `target/release/weft`.
build-host:
    cargo build --release -p weft_host --bin weft

# Build what is missing, then run the host with runtime.toml on the local bus.
run: build
    ./target/release/weft run --config runtime.toml

# Development: run the host with every component watched (WEFT_WATCH=1) and rebuild components whose sources change; each rebuilt one is hot-swapped.
dev: build
    #!/usr/bin/env bash
    set -euo pipefail
    WEFT_WATCH=1 ./target/release/weft run --config runtime.toml &
    host=$!
    trap 'kill $host 2>/dev/null || true' EXIT
    stamp=components/target/.dev-stamp
    touch "$stamp"
    while kill -0 "$host" 2>/dev/null; do
        sleep 1
        if [[ -n $(find components wit -newer "$stamp" \( -name '*.rs' -o -name '*.wit' -o -name Cargo.toml \) -not -path '*/target/*' -print -quit) ]]; then
            touch "$stamp"
            echo "[dev] sources changed; rebuilding components"
            bash components/build.sh > components/target/dev-build.log 2>&1 \
                || { tail -n 30 components/target/dev-build.log; echo "[dev] build failed; the running versions stay"; }
        fi
    done

# Formatting, lints, the components' own unit tests, every host test against the real built components (the flows again over NATS: WEFT_TEST_BUS=nats), and the embedding example.
test: build-components
    cargo fmt --all -- --check
    cd components && cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings
    cd components && cargo clippy --workspace --all-targets -- -D warnings
    cd components && cargo test --workspace
    cargo test --workspace
    WEFT_TEST_BUS=nats cargo test -p weft_host --test flow_e2e --test buildings_e2e --test durability_e2e
    cargo run -q -p weft_host --example embed

# One component's own tests: its native unit tests, then its tests through the host's harness (weft_host::testing).
test-component name:
    bash components/build.sh {{name}}
    cd components && cargo test -p {{name}}
    cargo test -p weft_host --test component-{{name}}

# Benchmarks: events/s, HTTP req/s, request-reply, start, registrations; what the sandbox costs; hot swap; durable events.
bench: build-components
    cargo bench -p weft_host --bench throughput
    cargo bench -p weft_host --bench sandbox
    cargo bench -p weft_host --bench swap
    cargo bench -p weft_host --bench durable
    cargo bench -p weft_host --bench nats

# Long fuzzing of the host's boundary: HTTP and envelope property tests with `cases` cases, the guest-driven fuzz with `seeds` seeds.
fuzz cases="20000" seeds="400": build-components
    PROPTEST_CASES={{cases}} cargo test -p weft_host --lib envelope
    PROPTEST_CASES={{cases}} cargo test -p weft_host --test boundary_fuzz
    WEFT_FUZZ_SEEDS={{seeds}} cargo test -p weft_host --test sandbox_e2e random_wit_values

# Remove build outputs and the local data dir.
clean:
    cargo clean
    rm -rf components/target .weft

# Crash test: kill -9 the host `cycles` times under load (registrations, deposits), restart it on the same data, then check every acknowledged write and every event's delivery (exactly once) in the SQLite files.
crash-test cycles="10" *flags:
    bash components/build.sh iam bpm lgm nsm faulty
    cargo build --release -p weft_host --bin weft
    cargo run --release -p weft_host --example crash_test -- --cycles {{cycles}} {{flags}}
