//! `--dtype`: the precision the operator asks for; [`super::Compute::decide`] settles what runs.

use clap::ValueEnum;

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    F32,
    F16,
    Bf16,
    Int8,
}

impl Dtype {
    /// The dtype candle reads the weights in: int8 is quantized from f32 weights (and runs as
    /// f32 where candle's ops run the model).
    pub fn candle(self) -> candle_core::DType {
        match self {
            Self::F32 | Self::Int8 => candle_core::DType::F32,
            Self::F16 => candle_core::DType::F16,
            Self::Bf16 => candle_core::DType::BF16,
        }
    }
}
