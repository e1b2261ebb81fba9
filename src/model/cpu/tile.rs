//! The matrix product's tiles, written once as plain loops: the operands every kernel takes
//! ([`Task`]), the f32 micro-kernel of the portable and neon levels, its epilogue (bias and
//! activation) and store, which the x86 kernels share, and the walk over a task's panels and
//! row tiles. Compiled into each kernel's `#[target_feature]` function like the row
//! operations in `generic.rs`.

use super::generic::{activate_block, Act};
use super::math::MulAdd;

/// One task's share of a packed product, as every kernel takes it (with the task's output
/// rows, `out[r]` holding exactly the task's columns): the input rows, `k` values of `X`
/// each (f32 values, bf16 pairs or int8 codes; zero-padded as the kernel reads them), the
/// task's weight panels of `W`, laid out for the kernel, the bias of its columns
/// (`[panel][nr]`, zero past the matrix's last column), the activation, and what turns the
/// kernel's sums into values (int8's `Dequant`; nothing for the float kernels).
pub(super) struct Task<'a, X, W, D = ()> {
    pub(super) x: &'a [X],
    pub(super) k: usize,
    pub(super) panels: &'a [W],
    pub(super) bias: &'a [f32],
    pub(super) act: Option<Act>,
    pub(super) dequant: D,
}

/// The plain-loop f32 micro-kernel (the portable and neon levels; x86 has hand-written ones
/// in `x86.rs`): `R` rows of `x` (row-major, `k` wide, from `row0`) times one panel of `NR`
/// packed weight columns (`[k][NR]`), then bias and activation, stored to columns
/// `c0..c0 + cols` of `out[row0..row0 + R]`. `R` and `NR` are constants, so the accumulators
/// stay in registers from the first product to the store.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn tile<M: MulAdd, const R: usize, const NR: usize>(
    x: &[f32],
    k: usize,
    row0: usize,
    panel: &[f32],
    bias: &[f32; NR],
    act: Option<Act>,
    out: &mut [&mut [f32]],
    (c0, cols): (usize, usize),
) {
    let rows: [&[f32]; R] = std::array::from_fn(|i| &x[(row0 + i) * k..][..k]);
    let mut a = [[0f32; NR]; R];
    for (b, kk) in panel[..k * NR].chunks_exact(NR).zip(0..k) {
        let b: &[f32; NR] = b.try_into().expect("NR values");
        for i in 0..R {
            let xv = rows[i][kk];
            for j in 0..NR {
                a[i][j] = M::mul_add(xv, b[j], a[i][j]);
            }
        }
    }
    // A copy for the epilogue: references into `a` itself would keep the accumulators in
    // memory (on the stack) through the loop above instead of in registers.
    let mut done = [[0f32; NR]; R];
    done.copy_from_slice(&a);
    for (i, acc) in done.iter_mut().enumerate() {
        epilogue::<M, NR>(acc, bias, act);
        store(&mut out[row0 + i][c0..c0 + cols], acc);
    }
}

/// `dst = src[..dst.len()]`: a whole panel as fixed-size vector stores (a copy of unknown
/// length would be a `memcpy` call per tile row), a partial last panel element by element.
#[inline(always)]
pub(super) fn store<const NR: usize>(dst: &mut [f32], src: &[f32; NR]) {
    match <&mut [f32; NR]>::try_from(&mut *dst) {
        Ok(full) => *full = *src,
        Err(_) => {
            for (d, s) in dst.iter_mut().zip(src) {
                *d = *s;
            }
        }
    }
}

/// Rows of the f32 micro-kernel's tile, up to 8: `$call!(R)` with R a constant.
macro_rules! by_rows {
    ($rows:expr, $call:ident) => {
        match $rows {
            8 => $call!(8),
            7 => $call!(7),
            6 => $call!(6),
            5 => $call!(5),
            4 => $call!(4),
            3 => $call!(3),
            2 => $call!(2),
            _ => $call!(1),
        }
    };
}
pub(super) use by_rows;

/// Rows of the next tile when `left` rows remain, for tiles of at most `mr`: the rows are
/// spread evenly over the tiles still needed (25 rows at 6 make 5 tiles of 5, not 4 of 6 and
/// a single-row tile that costs as much time as a full one).
#[inline(always)]
fn tile_rows(left: usize, mr: usize) -> usize {
    left.div_ceil(left.div_ceil(mr))
}

/// With few rows (one or two short sentences) a product waits on weights coming from memory,
/// not on arithmetic, and prefetching the next panel measured 10-20% faster at 25 rows; with
/// hundreds of rows the panel is reused by many tiles and the prefetch only crowded the
/// cache (5-8% slower at 800 rows).
const PREFETCH_MAX_ROWS: usize = 64;

/// How many bytes of input rows one block of the walk keeps in the core's L2 cache. With
/// hundreds of rows (a batch of 32 sentences is ~800) the input is larger than L2, and walking
/// every row for each panel read it from L3 once per panel; in blocks of this size each
/// block is read from memory once and then served from L2 to every panel.
const ROW_BLOCK_BYTES: usize = 128 * 1024;

/// Rows per block for inputs `row_bytes` wide: as many as fit [`ROW_BLOCK_BYTES`], a
/// multiple of the tile height `mr` so that every block but the last is whole tiles, and
/// at least one tile.
#[inline(always)]
fn row_block(row_bytes: usize, mr: usize) -> usize {
    (ROW_BLOCK_BYTES / row_bytes.max(1) / mr).max(1) * mr
}

/// Walks one task's share of a packed product: for each block of rows (see [`row_block`];
/// one block up to [`PREFETCH_MAX_ROWS`] rows), each panel of `NR` columns (`span` values of
/// `panels` each) and each tile of at most `mr` rows in the block, calls
/// `tile(rows, row0, (panel, next), bias, (c0, cols))`. `next` is the following panel, given
/// to the first tile of each panel only, for kernels that prefetch it, and only when the
/// product has at most [`PREFETCH_MAX_ROWS`] rows. The columns of the task
/// are `0..width` of each output row; `bias` is `[panel][NR]`, zero-padded. The panel stays
/// in cache while every row of the block passes over it.
#[inline(always)]
pub(super) fn walk_panels<P, const NR: usize>(
    m: usize,
    mr: usize,
    (panels, span): (&[P], usize),
    bias: &[f32],
    width: usize,
    mut tile: impl FnMut(usize, usize, (&[P], Option<&[P]>), &[f32; NR], (usize, usize)),
) {
    // A few rows are one block: their input is small, the weights are what streams in, and
    // a second block would read them again.
    let block = if m <= PREFETCH_MAX_ROWS {
        m
    } else {
        row_block(span / NR * std::mem::size_of::<P>(), mr)
    };
    let mut start = 0;
    while start < m {
        let end = m.min(start + block);
        for ((p, panel), bias) in panels
            .chunks_exact(span)
            .enumerate()
            .zip(bias.chunks_exact(NR))
        {
            let bias: &[f32; NR] = bias.try_into().expect("NR values");
            let c0 = p * NR;
            let cols = NR.min(width.saturating_sub(c0));
            let next = (m <= PREFETCH_MAX_ROWS)
                .then(|| panels.get((p + 1) * span..(p + 2) * span))
                .flatten();
            let mut row = start;
            while row < end {
                let rows = tile_rows(end - row, mr);
                let next = if row == start { next } else { None };
                tile(rows, row, (panel, next), bias, (c0, cols));
                row += rows;
            }
        }
        start = end;
    }
}

/// One task's share of a packed product with the plain-loop kernel:
/// `out[r][c] = act(sum_k x[r][k] w[c][k] + bias[c])` for every row `r < out.len()` and the
/// task's columns (panels `[panel][k][NR]`).
#[inline(always)]
pub(super) fn f32_panels<M: MulAdd, const MR: usize, const NR: usize>(
    task: &Task<f32, f32>,
    out: &mut [&mut [f32]],
) {
    let (m, width) = (out.len(), out.first().map_or(0, |r| r.len()));
    let Task { x, k, act, .. } = *task;
    walk_panels::<f32, NR>(
        m,
        MR.min(8),
        (task.panels, k * NR),
        task.bias,
        width,
        |rows, row, (panel, _), bias, cols| {
            macro_rules! call {
                ($r:literal) => {
                    tile::<M, $r, NR>(x, k, row, panel, bias, act, out, cols)
                };
            }
            by_rows!(rows, call)
        },
    );
}

/// `acc = act(acc + bias)` over one tile row, in registers.
#[inline(always)]
pub(super) fn epilogue<M: MulAdd, const NR: usize>(
    acc: &mut [f32; NR],
    bias: &[f32; NR],
    act: Option<Act>,
) {
    for j in 0..NR {
        acc[j] += bias[j];
    }
    if let Some(act) = act {
        activate_block::<M, NR>(acc, act);
    }
}

#[cfg(test)]
mod tests {
    use super::tile_rows;

    #[test]
    fn tiles_spread_rows_evenly_and_cover_them_all() {
        for mr in [4, 6, 8] {
            for m in 1..200 {
                let (mut row, mut sizes) = (0, Vec::new());
                while row < m {
                    let rows = tile_rows(m - row, mr);
                    assert!((1..=mr).contains(&rows), "{m} at {mr}: {rows}");
                    sizes.push(rows);
                    row += rows;
                }
                assert_eq!(row, m);
                assert_eq!(sizes.len(), m.div_ceil(mr), "{m} at {mr}: {sizes:?}");
                let (lo, hi) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
                assert!(hi - lo <= 1, "{m} at {mr}: {sizes:?}");
            }
        }
    }
}
