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

# Benchmarks: events/s through the local bus, HTTP req/s through the gateway, instantiation time.
bench: build-components
    cargo bench -p weft_host --bench throughput

# Remove build outputs and the local data dir.
clean:
    cargo clean
    rm -rf components/target .weft
