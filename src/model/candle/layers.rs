//! Small building blocks of candle's path: linear, layer norm, activations, attention masks.

use super::super::weights;
use crate::checkpoint::Activation;
use candle_core::{DType, Device, Result, Shape, Tensor};
use candle_nn::VarBuilder;

/// `y = x W^T (+ b)` over the last dimension.
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Linear {
    pub fn load(vb: &VarBuilder, in_dim: usize, out_dim: usize) -> Result<Self> {
        Self::load_with_bias(vb, in_dim, out_dim, true)
    }

    /// ModernBERT's and DeBERTa's configs say which projections have a bias.
    pub fn load_with_bias(
        vb: &VarBuilder,
        in_dim: usize,
        out_dim: usize,
        bias: bool,
    ) -> Result<Self> {
        Ok(Self {
            weight: vb.get((out_dim, in_dim), "weight")?,
            bias: if bias {
                Some(vb.get(out_dim, "bias")?)
            } else {
                None
            },
        })
    }

    /// Stacks several projections of the same input into one (Q, K and V), so that
    /// attention costs one matrix multiplication instead of three.
    pub fn concat(parts: &[Linear]) -> Result<Self> {
        let weights: Vec<&Tensor> = parts.iter().map(|p| &p.weight).collect();
        let biases: Option<Vec<&Tensor>> = parts.iter().map(|p| p.bias.as_ref()).collect();
        Ok(Self {
            weight: Tensor::cat(&weights, 0)?,
            bias: biases.map(|b| Tensor::cat(&b, 0)).transpose()?,
        })
    }

    /// `x` is `[rows, in]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = x.matmul(&self.weight.t()?)?;
        match &self.bias {
            Some(bias) => y.broadcast_add(bias),
            None => Ok(y),
        }
    }
}

#[derive(Debug, Clone)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f32,
}

impl LayerNorm {
    pub fn load(vb: &VarBuilder, size: usize, eps: f64) -> Result<Self> {
        let (w, b) = weights::norm_names(vb);
        Ok(Self {
            weight: vb.get(size, w)?,
            bias: vb.get(size, b)?,
            eps: eps as f32,
        })
    }

    /// ModernBERT's norms (`norm_bias: false`) have no bias: a zero one adds exactly nothing.
    pub fn load_with_bias(vb: &VarBuilder, size: usize, eps: f64, bias: bool) -> Result<Self> {
        if bias {
            return Self::load(vb, size, eps);
        }
        let weight = vb.get(size, "weight")?;
        Ok(Self {
            bias: weight.zeros_like()?,
            weight,
            eps: eps as f32,
        })
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
        Activation::Tanh => x.tanh(),
    }
}

/// An additive attention mask from per-position flags (`true`: may attend): 0 where allowed,
/// the dtype's lowest finite value elsewhere. Built on the host in f32 and converted once, so
/// half precision never sees `-inf * 0 = NaN`; callers keep at least one allowed key per row,
/// so that no row is all `lowest` (a sum of two `lowest` would be `-inf`).
pub fn additive_mask(
    allowed: impl Iterator<Item = bool>,
    shape: impl Into<Shape>,
    device: &Device,
    dtype: DType,
) -> Result<Tensor> {
    let min = match dtype {
        DType::F16 => f32::from(half::f16::MIN),
        DType::BF16 => f32::from(half::bf16::MIN),
        _ => f32::MIN,
    };
    let values: Vec<f32> = allowed.map(|ok| if ok { 0.0 } else { min }).collect();
    Tensor::from_vec(values, shape, device)?.to_dtype(dtype)
}
