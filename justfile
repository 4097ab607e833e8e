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

# Formatting, lints, the components' own unit tests, and every host test against the real built components.
test: build-components
    cargo fmt --all -- --check
    cd components && cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings
    cd components && cargo clippy --workspace --all-targets -- -D warnings
    cd components && cargo test --workspace
    cargo test --workspace

# Benchmarks: events/s, HTTP req/s, request-reply, start, registrations; then what the sandbox costs.
bench: build-components
    cargo bench -p weft_host --bench throughput
    cargo bench -p weft_host --bench sandbox

# Long fuzzing of the host's boundary: HTTP and envelope property tests with `cases` cases, the guest-driven fuzz with `seeds` seeds.
fuzz cases="20000" seeds="400": build-components
    PROPTEST_CASES={{cases}} cargo test --release -p weft_host --lib envelope
    PROPTEST_CASES={{cases}} cargo test --release -p weft_host --test boundary_fuzz
    WEFT_FUZZ_SEEDS={{seeds}} cargo test --release -p weft_host --test sandbox_e2e random_wit_values

# Remove build outputs and the local data dir.
clean:
    cargo clean
    rm -rf components/target .weft
