//! AMX tile kernels (Intel Xeon since Sapphire Rapids) for the int8 and bf16 products: the
//! same packed panels, activation rows and epilogues as the AVX-512 kernels (`x86_int8.rs`'s
//! VNNI, `x86.rs`'s bf16), with the products on the tile unit: one `tdpbusd` multiplies 16
//! rows by 16 columns over 64 k values (16,384 products), one `tdpbf16ps` over 32 k values,
//! where one `vpdpbusd` does 64 and one `vdpbf16ps` 32.
//!
//! Why the packing serves as it is: a VNNI panel is `[k / 4][32][4]` codes, so the tile of
//! weights `tdpbusd` takes (16 rows of 64 bytes: 16 groups of four k values, each for 16
//! columns) is columns 0-15 or 16-31 of 16 consecutive groups, rows 128 bytes apart; a bf16
//! panel (`[k / 2][32]` pairs) is the same shape in bytes. Input rows are read in place, the
//! row length as the tile's stride. Rows of k not a multiple of 64 bytes (of k values for
//! int8, of 32 for bf16) run on the AVX-512 kernel instead: no model we know has them.
//!
//! Rust's `target_feature` does not take AMX yet (unstable), so the tile instructions are
//! `asm!`, in functions compiled for the AVX-512 features of their epilogues; the compiler
//! knows nothing of the tile registers, and nothing but this module uses them.
//!
//! Linux gives a process AMX's 8 KB of tile state only when asked (`arch_prctl`): [`tiles_int8`]
//! and [`tiles_bf16`] ask, once, and the tokens of `isa.rs` exist only where that succeeded.

use super::int8::Int8Task;
use super::tile::{self, Task};
use super::x86::{self, features};
use super::x86_int8;
use std::arch::asm;
use std::arch::x86_64::*;
use std::sync::OnceLock;

/// CPUID leaf 7's EDX bits: AMX-BF16, AMX-TILE, AMX-INT8.
const AMX_BF16: u32 = 1 << 22;
const AMX_TILE: u32 = 1 << 24;
const AMX_INT8: u32 = 1 << 25;

/// Whether this CPU has AMX tiles with int8 products, and this process may use them.
pub(super) fn tiles_int8() -> bool {
    tiles(AMX_INT8)
}

/// Whether this CPU has AMX tiles with bf16 products, and this process may use them.
pub(super) fn tiles_bf16() -> bool {
    tiles(AMX_BF16)
}

fn tiles(unit: u32) -> bool {
    let want = AMX_TILE | unit;
    __cpuid_count(7, 0).edx & want == want && os_saves_tiles() && permitted()
}

/// XCR0's bits 17 and 18: the OS saves and restores the tile configuration and data.
fn os_saves_tiles() -> bool {
    // CPUID.1:ECX.OSXSAVE: `xgetbv` exists and the OS manages XCR0.
    if __cpuid(1).ecx & (1 << 27) == 0 {
        return false;
    }
    let (xcr0, _high): (u32, u32);
    // SAFETY: `xgetbv` with ECX = 0 reads XCR0, which exists where OSXSAVE is set (checked
    // above); it touches no memory and no flags.
    unsafe {
        asm!("xgetbv", in("ecx") 0, out("eax") xcr0, out("edx") _high,
             options(nomem, nostack, preserves_flags));
    }
    xcr0 & (3 << 17) == 3 << 17
}

/// Asks Linux, once per process, for the tile data state (`ARCH_REQ_XCOMP_PERM` for
/// `XFEATURE_XTILEDATA`): without it the first tile load faults. Granted for the whole
/// process, threads started before and after.
fn permitted() -> bool {
    static PERMITTED: OnceLock<bool> = OnceLock::new();
    *PERMITTED.get_or_init(|| {
        #[cfg(target_os = "linux")]
        {
            const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
            const XFEATURE_XTILEDATA: libc::c_long = 18;
            // SAFETY: this `arch_prctl` only asks the kernel to enable a state component for
            // the process; it reads and writes none of the process's memory.
            unsafe {
                libc::syscall(
                    libc::SYS_arch_prctl,
                    ARCH_REQ_XCOMP_PERM,
                    XFEATURE_XTILEDATA,
                ) == 0
            }
        }
        #[cfg(not(target_os = "linux"))]
        false
    })
}

/// Bytes of k per tile row (both operands), and bytes of a panel per such chunk: 16 rows of
/// 128 (one k group, or pair, for 32 columns).
const CHUNK: usize = 64;
const PANEL_CHUNK: usize = 16 * 128;

/// The tiles' shapes, in `ldtilecfg`'s 64-byte layout (palette 1): sums in tmm0-3 (rows
/// 0-15 by columns 0-15, 0-15 by 16-31, 16-31 by 0-15, 16-31 by 16-31), input rows in tmm4
/// and tmm5 (rows 0-15 and 16-31, 64 bytes of k each), weights in tmm6 and tmm7 (columns 0-15
/// and 16-31, 16 rows of 64 bytes). Without a second half (`second` 0), tmm2, 3 and 5 stay
/// unconfigured, and unused.
#[repr(C, align(64))]
struct Config([u8; 64]);

impl Config {
    fn new(first: usize, second: usize) -> Self {
        assert!((1..=16).contains(&first) && second <= 16 && (second == 0 || first == 16));
        let mut c = [0u8; 64];
        c[0] = 1;
        let mut shape = |tile: usize, rows: usize| {
            c[16 + 2 * tile] = CHUNK as u8; // bytes per row, a little-endian u16
            c[48 + tile] = rows as u8;
        };
        for t in [0, 1, 4] {
            shape(t, first);
        }
        for t in [6, 7] {
            shape(t, 16);
        }
        if second > 0 {
            for t in [2, 3, 5] {
                shape(t, second);
            }
        }
        Config(c)
    }
}

/// A 32 x 32 block of sums, as the tiles store them (i32 or f32 bits).
#[repr(C, align(64))]
struct Block([[u32; 32]; 32]);

/// The tile multiply-add, `$op tmmC, tmmA, tmmB`, for int8 or bf16.
macro_rules! dp {
    ($bf16:expr, $c:literal, $a:literal, $b:literal) => {
        if $bf16 {
            asm!(
                concat!("tdpbf16ps tmm", $c, ", tmm", $a, ", tmm", $b),
                options(nostack, nomem)
            );
        } else {
            asm!(
                concat!("tdpbusd tmm", $c, ", tmm", $a, ", tmm", $b),
                options(nostack, nomem)
            );
        }
    };
}

/// Bytes per input row of `task`: the tile kernels take rows of whole [`CHUNK`]s only.
fn row_bytes<X, W, D>(task: &Task<X, W, D>) -> usize {
    task.k * std::mem::size_of::<X>()
}

/// The product of a task's input rows (`m` of them, [`row_bytes`] each, a multiple of
/// [`CHUNK`]) and every panel of its weights (`row_bytes / CHUNK` chunks of [`PANEL_CHUNK`]
/// bytes each), 32 rows by one panel at a time: `finish(block, row0, rows, bias, (c0, cols))`
/// gets each block's sums with the panel's bias and its columns of the `width` output ones.
///
/// Only called from the `#[target_feature]` kernels below, whose tokens prove AMX usable.
#[inline(always)]
fn walk<const BF16: bool, X: Plain, W: Plain, D>(
    task: &Task<X, W, D>,
    (m, width): (usize, usize),
    mut finish: impl FnMut(&Block, usize, usize, &[f32; 32], (usize, usize)),
) {
    let (x, stride, panels) = (bytes(task.x), row_bytes(task), bytes(task.panels));
    let chunks = stride / CHUNK;
    let span = chunks * PANEL_CHUNK;
    assert!(chunks > 0 && stride.is_multiple_of(CHUNK) && panels.len().is_multiple_of(span));
    let x = &x[..m * stride];
    let mut block = Block([[0; 32]; 32]);
    let mut shape = None;
    let mut row0 = 0;
    while row0 < m {
        let rows = (m - row0).min(32);
        let halves = (rows.min(16), rows.saturating_sub(16));
        if shape != Some(halves) {
            let config = Config::new(halves.0, halves.1);
            // SAFETY: a valid palette-1 configuration (`Config::new`), 64 bytes, read only.
            unsafe { asm!("ldtilecfg [{}]", in(reg) config.0.as_ptr(), options(nostack)) };
            shape = Some(halves);
        }
        let two = halves.1 > 0;
        // Checked: every input read below is within these rows.
        let a = &x[row0 * stride..(row0 + rows) * stride];
        for (p, panel) in panels.chunks_exact(span).enumerate() {
            // SAFETY: the tiles are configured as `Config` says (rows, 64 bytes each). Input
            // reads: tile rows `i < rows` at `i * stride + c * CHUNK`, 64 bytes, and
            // `c * CHUNK + 64 <= stride`, so within `a` (`rows * stride` bytes). Weight reads:
            // 16 rows at `c * PANEL_CHUNK + j * 128 + {0, 64}`, 64 bytes, at most
            // `(c + 1) * PANEL_CHUNK <= span = panel.len()`. Stores: tile rows of 64 bytes at
            // 128-byte strides from offsets 0, 64, 2048 and 2112 of the 4,096-byte `block`.
            // tmm2, 3 and 5 are used only when configured (`two`).
            unsafe {
                asm!("tilezero tmm0", "tilezero tmm1", options(nostack, nomem));
                if two {
                    asm!("tilezero tmm2", "tilezero tmm3", options(nostack, nomem));
                }
                for c in 0..chunks {
                    let a0 = a.as_ptr().add(c * CHUNK);
                    let b = panel.as_ptr().add(c * PANEL_CHUNK);
                    asm!(
                        "tileloadd tmm4, [{a} + {s} * 1]",
                        "tileloadd tmm6, [{b} + {t} * 1]",
                        "tileloadd tmm7, [{b} + {t} * 1 + 64]",
                        a = in(reg) a0, b = in(reg) b, s = in(reg) stride, t = in(reg) 128usize,
                        options(nostack, readonly),
                    );
                    dp!(BF16, "0", "4", "6");
                    dp!(BF16, "1", "4", "7");
                    if two {
                        asm!(
                            "tileloadd tmm5, [{a} + {s} * 1]",
                            a = in(reg) a0.add(16 * stride), s = in(reg) stride,
                            options(nostack, readonly),
                        );
                        dp!(BF16, "2", "5", "6");
                        dp!(BF16, "3", "5", "7");
                    }
                }
                let out = block.0.as_mut_ptr().cast::<u8>();
                asm!(
                    "tilestored [{o} + {t} * 1], tmm0",
                    "tilestored [{o} + {t} * 1 + 64], tmm1",
                    o = in(reg) out, t = in(reg) 128usize, options(nostack),
                );
                if two {
                    asm!(
                        "tilestored [{o} + {t} * 1], tmm2",
                        "tilestored [{o} + {t} * 1 + 64], tmm3",
                        o = in(reg) out.add(16 * 128), t = in(reg) 128usize, options(nostack),
                    );
                }
            }
            let c0 = p * x86::AVX512_NR;
            let cols = (width - c0).min(x86::AVX512_NR);
            let bias = task.bias[c0..c0 + x86::AVX512_NR]
                .try_into()
                .expect("a panel's bias");
            finish(&block, row0, rows, bias, (c0, cols));
        }
        row0 += rows;
    }
    // SAFETY: releases the tile state (so the OS need not save it), always valid.
    unsafe { asm!("tilerelease", options(nostack, nomem)) };
}

/// Integer types without padding whose every bit pattern is a valid value (sealed: only
/// these three), so a slice of them can be read as bytes.
trait Plain: Copy + sealed::Sealed {}
impl Plain for u8 {}
impl Plain for i8 {}
impl Plain for u32 {}
mod sealed {
    pub trait Sealed {}
    impl Sealed for u8 {}
    impl Sealed for i8 {}
    impl Sealed for u32 {}
}

/// The bytes of a slice of plain integers.
fn bytes<T: Plain>(v: &[T]) -> &[u8] {
    // SAFETY: `T` is u8, i8 or u32 (`Plain` is sealed): no padding, so every byte of the
    // slice is initialised; the length is the slice's size in bytes, and u8 has alignment 1.
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast(), std::mem::size_of_val(v)) }
}

/// Runs `$call!(R, row)` for `rows` rows from `row0` in groups of 8, the last shorter.
macro_rules! by_eights {
    ($row0:expr, $rows:expr, $call:ident) => {{
        let (row0, rows) = ($row0, $rows);
        let mut i = 0;
        while i + 8 <= rows {
            $call!(8, row0 + i, i);
            i += 8;
        }
        let left = rows - i;
        if left > 0 {
            macro_rules! tail {
                ($r:literal) => {
                    $call!($r, row0 + i, i)
                };
            }
            tile::by_rows!(left, tail)
        }
    }};
}

features!(
    amx_int8,
    "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,avx512vnni"
);

/// The int8 product on AMX (`tdpbusd`), then VNNI's epilogue (`x86_int8::finish512`): the
/// same i32 sums as the VNNI kernel, so the same values.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,avx512vnni")]
pub(super) fn amx_int8(task: &Int8Task, out: &mut [&mut [f32]]) {
    let (m, width) = (out.len(), out.first().map_or(0, |r| r.len()));
    if !row_bytes(task).is_multiple_of(CHUNK) || m == 0 {
        // (A safe call: this function is compiled for `vnni`'s features, a test checks.)
        return x86_int8::vnni(task, false, out);
    }
    walk::<false, _, _, _>(task, (m, width), |block, row0, rows, bias, cols| {
        macro_rules! call {
            ($r:literal, $row:expr, $i:expr) => {{
                let acc: [[__m512i; 2]; $r] = std::array::from_fn(|r| {
                    let sums = &block.0[$i + r];
                    // SAFETY: two unaligned 512-bit reads of a 32-value row.
                    unsafe {
                        [
                            _mm512_loadu_si512(sums.as_ptr().cast()),
                            _mm512_loadu_si512(sums.as_ptr().add(16).cast()),
                        ]
                    }
                });
                x86_int8::finish512::<$r>(&acc, task, bias, out, $row, cols)
            }};
        }
        by_eights!(row0, rows, call)
    });
}

features!(
    amx_bf16,
    "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,avx512bf16"
);

/// The bf16 product on AMX (`tdpbf16ps`), then the f32 kernels' epilogue (`x86::finish`).
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,avx512bf16")]
pub(super) fn amx_bf16(task: &Task<u32, u32>, out: &mut [&mut [f32]]) {
    let (m, width) = (out.len(), out.first().map_or(0, |r| r.len()));
    if !row_bytes(task).is_multiple_of(CHUNK) || m == 0 {
        // (A safe call: this function is compiled for `avx512_bf16`'s features.)
        return x86::avx512_bf16(task, out);
    }
    walk::<true, _, _, _>(task, (m, width), |block, row0, rows, bias, cols| {
        macro_rules! call {
            ($r:literal, $row:expr, $i:expr) => {{
                let acc: [[f32; 32]; $r] =
                    std::array::from_fn(|r| block.0[$i + r].map(f32::from_bits));
                x86::finish::<$r, 32>(acc, bias, task.act, out, $row, cols)
            }};
        }
        by_eights!(row0, rows, call)
    });
}
