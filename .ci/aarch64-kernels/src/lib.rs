//! src/model/cpu under the module path it has in the server (its macros name
//! `$crate::model::cpu`), for `cargo clippy --target aarch64-unknown-linux-gnu`.

#[path = "../../../src/model/cpu/mod.rs"]
pub mod cpu;

pub mod model {
    pub use super::cpu;
}
