//! The server's `kernels::<level>::<op>` trials (tests/compute_paths/kernels.rs: each CPU
//! kernel against a plain scalar version, at every level this CPU runs; the others reported
//! ignored by name) on src/model/cpu alone: what CI runs for aarch64 (neon and portable) under
//! qemu, without cross-building the server.

// The paths of the server's tests name its crate (`sentiment_server::model::cpu`), which
// lib.rs mirrors.
extern crate sentiment_server_aarch64_kernels as sentiment_server;

#[path = "../../../tests/compute_paths/harness.rs"]
mod harness;
#[path = "../../../tests/compute_paths/kernels.rs"]
mod kernels;

use harness::{amx_bf16, amx_int8, bf16_hardware, trial, vnni_int8};
use libtest_mimic::Arguments;

fn main() {
    let args = Arguments::from_args();
    libtest_mimic::run(&args, kernels::trials()).exit();
}
