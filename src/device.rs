//! Choosing the compute device from `--device`.

use candle_core::Device;

/// `auto`, `cpu`, `cuda` or `cuda:N`. An explicit `cuda` that cannot be honoured is an error.
pub fn select(spec: &str) -> Result<Device, String> {
    let spec = spec.trim().to_ascii_lowercase();
    match spec.as_str() {
        "cpu" => Ok(Device::Cpu),
        "auto" => Ok(auto()),
        "cuda" | "gpu" => cuda(0),
        other => match other.strip_prefix("cuda:") {
            Some(n) => n
                .parse::<usize>()
                .map_err(|_| format!("--device {other}: expected cuda:<index>, e.g. cuda:0"))
                .and_then(cuda),
            None => Err(format!(
                "--device {other}: expected auto, cpu, cuda or cuda:N"
            )),
        },
    }
}

pub fn describe(device: &Device) -> String {
    match device {
        Device::Cpu => "cpu".into(),
        Device::Cuda(_) => match device.location() {
            candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
            _ => "cuda".into(),
        },
        Device::Metal(_) => "metal".into(),
    }
}

#[cfg(feature = "cuda")]
fn auto() -> Device {
    match Device::new_cuda(0) {
        Ok(device) => device,
        Err(e) => {
            tracing::warn!(error = %e, "--device auto: no usable CUDA GPU, running on the CPU");
            Device::Cpu
        }
    }
}

#[cfg(not(feature = "cuda"))]
fn auto() -> Device {
    Device::Cpu
}

#[cfg(feature = "cuda")]
fn cuda(index: usize) -> Result<Device, String> {
    Device::new_cuda(index).map_err(|e| {
        format!("--device cuda:{index}: no usable CUDA GPU ({e}); check the driver and that the GPU is visible (docker run --gpus ...)")
    })
}

#[cfg(not(feature = "cuda"))]
fn cuda(index: usize) -> Result<Device, String> {
    Err(format!(
        "--device cuda:{index}: this binary was built without CUDA support; \
         build with `--features cuda` (see scripts/build-cuda.sh) or use the CUDA image"
    ))
}
