//! Small building blocks shared by every encoder: linear, layer norm, activations.

use super::config::Activation;
use super::kernels::{Epilogue, PackKind, PackedMatrix};
use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor};
use candle_nn::VarBuilder;
use std::sync::Arc;

/// `y = x W^T + b` over the last dimension.
#[derive(Debug, Clone)]
pub enum Linear {
    /// Weight kept as stored (`[out, in]`) and multiplied by candle (any device, any dtype).
    Candle { weight: Tensor, bias: Tensor },
    /// Weight packed once for the CPU kernels of [`super::kernels`].
    Packed(Arc<PackedMatrix>),
}

impl Linear {
    pub fn load(vb: &VarBuilder, in_dim: usize, out_dim: usize) -> Result<Self> {
        Ok(Self::Candle {
            weight: vb.get((out_dim, in_dim), "weight")?,
            bias: vb.get(out_dim, "bias")?,
        })
    }

    /// Stacks several projections of the same input into one (Q, K and V), so that
    /// attention costs one matrix multiplication instead of three.
    pub fn concat(parts: &[Linear]) -> Result<Self> {
        let mut weights = Vec::with_capacity(parts.len());
        let mut biases = Vec::with_capacity(parts.len());
        for part in parts {
            match part {
                Self::Candle { weight, bias } => {
                    weights.push(weight);
                    biases.push(bias);
                }
                Self::Packed(_) => candle_core::bail!("cannot concatenate packed linear layers"),
            }
        }
        Ok(Self::Candle {
            weight: Tensor::cat(&weights, 0)?,
            bias: Tensor::cat(&biases, 0)?,
        })
    }

    /// Repacks the weight for the CPU kernels when `kind` is given.
    pub fn pack(self, kind: Option<PackKind>) -> Result<Self> {
        match (self, kind) {
            (Self::Candle { weight, bias }, Some(kind)) => {
                let (n, k) = weight.dims2()?;
                let w = weight
                    .to_dtype(DType::F32)?
                    .flatten_all()?
                    .to_vec1::<f32>()?;
                let b = bias.to_dtype(DType::F32)?.to_vec1::<f32>()?;
                Ok(Self::Packed(Arc::new(PackedMatrix::pack(
                    &w, n, k, b, kind,
                ))))
            }
            (linear, _) => Ok(linear),
        }
    }

    /// The packed matrix, when this layer has one.
    pub fn packed(&self) -> Option<Arc<PackedMatrix>> {
        match self {
            Self::Packed(matrix) => Some(matrix.clone()),
            Self::Candle { .. } => None,
        }
    }

    /// `x` is `[rows, in]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Self::Candle { weight, bias } => x.matmul(&weight.t()?)?.broadcast_add(bias),
            Self::Packed(matrix) => packed(x, matrix, Epilogue::None),
        }
    }

    /// `activation(x W^T + b)`, fused into the product where the kernel can.
    pub fn forward_activated(&self, x: &Tensor, activation: Activation) -> Result<Tensor> {
        match (self, activation) {
            (Self::Packed(matrix), Activation::Gelu) => packed(x, matrix, Epilogue::Gelu),
            _ => activate(&self.forward(x)?, activation),
        }
    }
}

fn packed(x: &Tensor, matrix: &PackedMatrix, epilogue: Epilogue) -> Result<Tensor> {
    x.contiguous()?
        .apply_op1_no_bwd(&PackedOp { matrix, epilogue })
}

struct PackedOp<'a> {
    matrix: &'a PackedMatrix,
    epilogue: Epilogue,
}

impl CustomOp1 for PackedOp<'_> {
    fn name(&self) -> &'static str {
        "packed-linear"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(data) = storage else {
            candle_core::bail!("packed linear takes f32 input")
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("packed linear needs a contiguous input")
        };
        let mut dims = layout.shape().dims().to_vec();
        let k = dims.last().copied().unwrap_or(0);
        if k != self.matrix.in_features() {
            candle_core::bail!(
                "packed linear expects {} inputs, got {k}",
                self.matrix.in_features()
            )
        }
        let m = (end - start) / k.max(1);
        let out = self.matrix.matmul(&data[start..end], m, self.epilogue);
        if let Some(last) = dims.last_mut() {
            *last = self.matrix.out_features();
        }
        Ok((CpuStorage::F32(out), Shape::from(dims)))
    }
}

#[derive(Debug, Clone)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f32,
}

impl LayerNorm {
    /// Reads `weight`/`bias`, or the `gamma`/`beta` names of older BERT checkpoints.
    pub fn load(vb: &VarBuilder, size: usize, eps: f64) -> Result<Self> {
        let (w, b) = if vb.contains_tensor("weight") || !vb.contains_tensor("gamma") {
            ("weight", "bias")
        } else {
            ("gamma", "beta")
        };
        Ok(Self {
            weight: vb.get(size, w)?,
            bias: vb.get(size, b)?,
            eps: eps as f32,
        })
    }

    /// The parameters as host vectors, for the host encoder.
    #[cfg(target_arch = "x86_64")]
    pub fn to_host(&self) -> Result<super::host::Norm> {
        Ok(super::host::Norm::new(
            self.weight.to_dtype(DType::F32)?.to_vec1()?,
            self.bias.to_dtype(DType::F32)?.to_vec1()?,
            self.eps,
        ))
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        candle_nn::ops::layer_norm(x, &self.weight, &self.bias, self.eps)
    }
}

pub fn activate(x: &Tensor, activation: Activation) -> Result<Tensor> {
    match activation {
        Activation::Gelu => x.gelu_erf(),
        Activation::GeluTanh => x.gelu(),
        Activation::Relu => x.relu(),
        Activation::Silu => x.silu(),
    }
}
