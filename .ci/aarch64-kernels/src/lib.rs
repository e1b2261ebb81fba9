//! src/model/cpu under the module path it has in the server (its macros name
//! `$crate::model::cpu`), for `cargo clippy --target aarch64-unknown-linux-gnu`, under the
//! server's crate-level lints.

#![deny(unsafe_code)]
#![deny(clippy::undocumented_unsafe_blocks)]

#[path = "../../../src/model/cpu/mod.rs"]
pub mod cpu;

pub mod model {
    pub use super::cpu;
}

/// The server's uses of `model::cpu`'s `pub(crate)` items (from `model::compute` and
/// `model::host`), which would be dead code in this crate of the module alone.
#[allow(dead_code)]
fn server_uses(format: cpu::WeightFormat, isa: cpu::Isa, matrix: &cpu::PackedMatrix) {
    let _ = (format.dtype(), format.describe(isa), matrix.out_features());
    matrix.matmul_into(&[], 0, None, &mut []);
}
