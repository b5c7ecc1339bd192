//! The WebGPU device and the machinery every kernel launch shares: compiled pipelines, one
//! command encoder that collects a step's work until the CPU needs an answer, a uniform
//! arena (each launch's parameters at its own dynamic offset, written once per submission),
//! and readbacks through pooled staging buffers, which may be waited for later, so the device
//! can work on the next step while a result travels back. Errors the device reports asynchronously are
//! kept and returned by the next submission, so a bad launch becomes an `Error`, not a panic.

use std::cell::{Cell, OnceCell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::num::NonZeroU64;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use wgpu::util::DeviceExt;

use super::params::{
    activation_constants, AttentionParams, GatherParams, LinearParams, RmsNormParams, Top2Params, Uniform, TOP2_WGSL,
};
use crate::error::{Error, Result};

/// Uniform slots are this far apart (WebGPU's minUniformBufferOffsetAlignment).
const SLOT: u64 = 256;
/// Launches per submission before the arena is flushed.
const SLOTS: u64 = 512;

/// How a weight matrix lies in its buffer on the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    F32,
    /// f16 values packed two to a 32-bit word (`Gpu::upload_f16`).
    F16,
    /// Symmetric 8-bit integers packed four to a word, then one f32 scale per row
    /// (`Gpu::upload_q8`).
    Q8,
}

/// The kernels; those that read weight matrices come in one form per `Format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// Embedding lookup.
    Gather(Format),
    RmsNorm,
    /// One workgroup per output feature, cooperative (hardware GPUs).
    Linear(Format),
    /// Register tiles of rows and output features per invocation (software adapters).
    LinearRows(Format),
    Attention,
    Top2,
}

impl Kernel {
    const ALL: [Kernel; 12] = [
        Kernel::Gather(Format::F32),
        Kernel::Gather(Format::F16),
        Kernel::Gather(Format::Q8),
        Kernel::RmsNorm,
        Kernel::Linear(Format::F32),
        Kernel::Linear(Format::F16),
        Kernel::Linear(Format::Q8),
        Kernel::LinearRows(Format::F32),
        Kernel::LinearRows(Format::F16),
        Kernel::LinearRows(Format::Q8),
        Kernel::Attention,
        Kernel::Top2,
    ];

    /// Its place in `Gpu::pipelines` (the order of `ALL`).
    fn index(self) -> usize {
        Kernel::ALL.iter().position(|&k| k == self).expect("every kernel is in ALL")
    }

    /// The kernel's WGSL: its parameters' declaration (params.rs), what context.rs declares
    /// for it (weights in their format), and its file.
    fn source(self) -> String {
        let linear = |file: &str, format| {
            format!(
                "{}{}{}{}{}{file}",
                LinearParams::WGSL,
                activation_constants(),
                weight_array(2, "w", "weight", format),
                weight_array(3, "w_gate", "weight_gate", format),
                include_str!("kernels/linear_common.wgsl")
            )
        };
        match self {
            Kernel::Gather(format) => {
                format!("{}{}{}", GatherParams::WGSL, weight_array(2, "table", "weight", format), include_str!("kernels/gather.wgsl"))
            }
            Kernel::RmsNorm => format!("{}{}", RmsNormParams::WGSL, include_str!("kernels/rms_norm.wgsl")),
            Kernel::Linear(format) => linear(include_str!("kernels/linear.wgsl"), format),
            Kernel::LinearRows(format) => linear(include_str!("kernels/linear_rows.wgsl"), format),
            Kernel::Attention => format!("{}{}", AttentionParams::WGSL, include_str!("kernels/attention.wgsl")),
            Kernel::Top2 => format!("{}{}{}", Top2Params::WGSL, TOP2_WGSL, include_str!("kernels/top2.wgsl")),
        }
    }

    /// The storage buffers after the uniform, in binding order; the last one is written.
    fn storage_bindings(self) -> usize {
        match self {
            Kernel::Gather(_) | Kernel::RmsNorm => 3,
            Kernel::Linear(_) | Kernel::LinearRows(_) => 4,
            Kernel::Attention => 5,
            Kernel::Top2 => 2,
        }
    }
}

/// WGSL for a read-only weight array `var` at `binding`, `fn func(i: u32) -> f32` that
/// reads its element i, `fn func2(i: u32) -> vec2<f32>` that reads elements i and i + 1
/// (i even), `fn func4(w: vec4<u32>, i: u32) -> mat2x4<f32>` that reads elements i and
/// i + 1 after each of four offsets, as two columns (linear_rows.wgsl's four features), and
/// `fn func_scale(row: u32) -> f32`, the factor a product with row `row` is multiplied by
/// once it is summed. f32 storage; f16 values packed two to a u32 (element 2k in the low
/// half, as they lie in memory), widened by core WGSL's `unpack2x16float`, so no adapter
/// feature is needed: the widened values are exactly the stored f16 ones, and the kernels
/// compute the same sums either way, from half the bytes. For both the scale is 1 (exact).
/// q8: four integers to a u32 (element 4k in the low byte), sign-extended by core WGSL's
/// `extractBits` on an i32 (no language extension, unlike `unpack4xI8`), so the products
/// sum the integers themselves in f32 and the row's scale, read from the same buffer at word
/// `p.scales + row`, is applied to the sum, as the CPU does.
fn weight_array(binding: u32, var: &str, func: &str, format: Format) -> String {
    let four = format!(
        "fn {func}4(w: vec4<u32>, i: u32) -> mat2x4<f32> {{ \
         let a = {func}2(w.x + i); let b = {func}2(w.y + i); let c = {func}2(w.z + i); let d = {func}2(w.w + i); \
         return mat2x4<f32>(vec4<f32>(a.x, b.x, c.x, d.x), vec4<f32>(a.y, b.y, c.y, d.y)); }}\n"
    );
    let unscaled = format!("fn {func}_scale(row: u32) -> f32 {{ return 1.0; }}\n");
    let reads = match format {
        Format::F32 => format!(
            "@group(0) @binding({binding}) var<storage, read> {var}: array<f32>;\n\
             fn {func}(i: u32) -> f32 {{ return {var}[i]; }}\n\
             fn {func}2(i: u32) -> vec2<f32> {{ return vec2<f32>({var}[i], {var}[i + 1u]); }}\n{unscaled}"
        ),
        Format::F16 => format!(
            "@group(0) @binding({binding}) var<storage, read> {var}: array<u32>;\n\
             fn {func}(i: u32) -> f32 {{ let pair = unpack2x16float({var}[i >> 1u]); return select(pair.x, pair.y, (i & 1u) == 1u); }}\n\
             fn {func}2(i: u32) -> vec2<f32> {{ return unpack2x16float({var}[i >> 1u]); }}\n{unscaled}"
        ),
        // i even: elements i and i + 1 are bytes 0-1 or 2-3 of one word.
        Format::Q8 => format!(
            "@group(0) @binding({binding}) var<storage, read> {var}: array<u32>;\n\
             fn {func}(i: u32) -> f32 {{ return f32(extractBits(i32({var}[i >> 2u]), (i & 3u) * 8u, 8u)); }}\n\
             fn {func}2(i: u32) -> vec2<f32> {{ let word = i32({var}[i >> 2u]); let at = (i & 2u) * 8u; \
             return vec2<f32>(f32(extractBits(word, at, 8u)), f32(extractBits(word, at + 8u, 8u))); }}\n\
             fn {func}_scale(row: u32) -> f32 {{ return bitcast<f32>({var}[p.scales + row]); }}\n"
        ),
    };
    reads + &four
}

struct Pipeline {
    layout: wgpu::BindGroupLayout,
    pipeline: wgpu::ComputePipeline,
}

/// What the device was asked to do since it was created: the figures that decide speed on
/// WebGPU for a model this small (each launch and each wait costs far more than the maths).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GpuCounts {
    /// Kernel launches (compute dispatches).
    pub launches: u64,
    /// Queue submissions.
    pub submissions: u64,
    /// Results the CPU read back (not counting those thrown away unread).
    pub readbacks: u64,
    /// Bytes written from the CPU after loading (token ids and launch parameters).
    pub bytes_uploaded: u64,
    /// Bytes read back.
    pub bytes_read: u64,
}

/// Work recorded but not yet submitted.
#[derive(Default)]
struct Recording {
    encoder: Option<wgpu::CommandEncoder>,
    /// The compute pass launches are recorded into, open until a copy or the submission
    /// (one pass per submission rather than one per launch: each pass costs the browser a
    /// round of validation, and a pass orders its dispatches' storage accesses anyway).
    pass: Option<wgpu::ComputePass<'static>>,
    /// Uniform bytes of the recorded launches, slot by slot.
    params: Vec<u8>,
}

impl Recording {
    /// The encoder, with no pass open on it.
    fn encoder(&mut self, device: &wgpu::Device) -> &mut wgpu::CommandEncoder {
        self.pass = None;
        self.encoder.get_or_insert_with(|| device.create_command_encoder(&wgpu::CommandEncoderDescriptor::default()))
    }

    fn pass(&mut self, device: &wgpu::Device) -> &mut wgpu::ComputePass<'static> {
        if self.pass.is_none() {
            let pass = self.encoder(device).begin_compute_pass(&wgpu::ComputePassDescriptor::default()).forget_lifetime();
            self.pass = Some(pass);
        }
        self.pass.as_mut().expect("just opened")
    }
}

/// Bind groups by kernel and buffers: a decoding step launches the same kernels over the
/// same buffers as the step before, and creating a bind group is a call into the browser's
/// GPU process each time. Emptied when a generation starts (its buffers are new).
type BindGroups = HashMap<(usize, Vec<wgpu::Buffer>), wgpu::BindGroup>;

pub struct Gpu {
    device: wgpu::Device,
    queue: wgpu::Queue,
    limits: wgpu::Limits,
    adapter_name: String,
    /// A software renderer (lavapipe, SwiftShader): correct, but slower than the CPU backend.
    software: bool,
    /// Matrix products by the cooperative kernel (hardware GPUs) rather than by register
    /// tiles (software adapters); see `set_cooperative_kernels`.
    cooperative: bool,
    /// By `Kernel::index`, each compiled on its first launch: a model reads its matrices in
    /// one format, so most weight-reading variants are never used, and each compilation
    /// costs a browser noticeable time.
    pipelines: Vec<OnceCell<Pipeline>>,
    arena: wgpu::Buffer,
    recording: RefCell<Recording>,
    bind_groups: RefCell<BindGroups>,
    /// Readback buffers not in use (a few: one per result in flight).
    staging: Arc<Mutex<Vec<wgpu::Buffer>>>,
    counts: Cell<GpuCounts>,
    /// What went wrong on the device, as its callbacks reported it.
    fault: Arc<Mutex<Option<Fault>>>,
}

impl Drop for Gpu {
    /// Destroys the device, which frees every buffer made on it now, rather than whenever
    /// the browser collects the JS objects behind them (a disposed model's memory is given
    /// back at once).
    fn drop(&mut self) {
        self.device.destroy();
        LIVE.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A second handle on a `Gpu`'s device, for destroying it while the model is in use.
#[derive(Clone)]
pub struct DeviceHandle {
    device: wgpu::Device,
    fault: Arc<Mutex<Option<Fault>>>,
}

impl DeviceHandle {
    /// `Gpu::destroy`, from outside the model. The loss is recorded at once, so a step that
    /// fails before the device's own notice arrives already reports it.
    pub fn destroy(&self) {
        if let Ok(mut s) = self.fault.lock() {
            s.get_or_insert(Fault::Lost("the device was destroyed (loseDevice)".into()));
        }
        self.device.destroy();
    }
}

/// An error the device reported from a callback, kept until the next `check`.
#[derive(Clone)]
enum Fault {
    /// The first validation or out-of-memory error.
    Error(String),
    /// The device is gone; this replaces any error before it (a lost device also fails
    /// the work in flight, and that is not what the user needs to hear about).
    Lost(String),
}

/// `Gpu`s alive in this process (or wasm instance): each holds a device and the buffers made
/// on it, so a count that does not fall back after models are disposed is a leak.
static LIVE: AtomicUsize = AtomicUsize::new(0);

/// How many `Gpu`s (devices) are alive now.
pub fn live_devices() -> usize {
    LIVE.load(Ordering::Relaxed)
}

fn gpu_error(what: impl std::fmt::Display) -> Error {
    Error::Gpu(what.to_string())
}

impl Gpu {
    /// Asks for an adapter and a device with the adapter's own limits.
    pub async fn new() -> Result<Gpu> {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle());
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                ..Default::default()
            })
            .await
            .map_err(|e| gpu_error(format!("no WebGPU adapter ({e}); use the CPU backend (device \"cpu\")")))?;
        let limits = adapter.limits();
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("free-wasm"),
                required_limits: limits.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| gpu_error(format!("the WebGPU adapter refused a device ({e}); use the CPU backend")))?;
        let fault = Arc::new(Mutex::new(None));
        let slot = fault.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            if let Ok(mut s) = slot.lock() {
                s.get_or_insert(Fault::Error(e.to_string()));
            }
        }));
        let slot = fault.clone();
        device.set_device_lost_callback(move |reason, message| {
            if let Ok(mut s) = slot.lock() {
                *s = Some(Fault::Lost(format!("{reason:?}: {message}")));
            }
        });
        let pipelines = Kernel::ALL.iter().map(|_| OnceCell::new()).collect();
        let arena = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("uniform arena"),
            size: SLOT * SLOTS,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let info = adapter.get_info();
        let software = info.device_type == wgpu::DeviceType::Cpu;
        LIVE.fetch_add(1, Ordering::Relaxed);
        Ok(Gpu {
            adapter_name: info.name,
            software,
            cooperative: !software,
            device,
            queue,
            limits,
            pipelines,
            arena,
            recording: RefCell::default(),
            bind_groups: RefCell::default(),
            staging: Arc::default(),
            counts: Cell::new(GpuCounts::default()),
            fault,
        })
    }

    fn pipeline(device: &wgpu::Device, kernel: Kernel) -> Pipeline {
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(&format!("{kernel:?}")),
            source: wgpu::ShaderSource::Wgsl(kernel.source().into()),
        });
        let n = kernel.storage_bindings();
        let mut entries = vec![wgpu::BindGroupLayoutEntry {
            binding: 0,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Uniform,
                has_dynamic_offset: true,
                min_binding_size: NonZeroU64::new(SLOT),
            },
            count: None,
        }];
        entries.extend((0..n).map(|i| wgpu::BindGroupLayoutEntry {
            binding: i as u32 + 1,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Storage { read_only: i + 1 < n },
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        }));
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor { label: None, entries: &entries });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: None,
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(&format!("{kernel:?}")),
            layout: Some(&pipeline_layout),
            module: &module,
            entry_point: Some("main"),
            compilation_options: Default::default(),
            cache: None,
        });
        Pipeline { layout, pipeline }
    }

    pub fn adapter_name(&self) -> &str {
        &self.adapter_name
    }

    pub fn is_software(&self) -> bool {
        self.software
    }

    /// Whether matrix products use the cooperative kernel (linear.wgsl), as on hardware
    /// GPUs, rather than the register-tiled one (linear_rows.wgsl) of software adapters.
    pub fn cooperative_kernels(&self) -> bool {
        self.cooperative
    }

    /// Chooses the matrix kernel whatever the adapter is: the tests run the cooperative one
    /// on lavapipe too, since the machines that run them have no hardware GPU.
    pub fn set_cooperative_kernels(&mut self, cooperative: bool) {
        self.cooperative = cooperative;
    }

    pub fn counts(&self) -> GpuCounts {
        self.counts.get()
    }

    fn count(&self, f: impl FnOnce(&mut GpuCounts)) {
        let mut c = self.counts.get();
        f(&mut c);
        self.counts.set(c);
    }

    pub fn limits(&self) -> &wgpu::Limits {
        &self.limits
    }

    /// A storage buffer of `bytes` (rounded up to 4), zeroed.
    pub fn buffer(&self, label: &str, bytes: u64) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes.max(4).next_multiple_of(4),
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    pub fn upload(&self, label: &str, data: &[f32]) -> wgpu::Buffer {
        self.upload_bytes(label, data.iter().flat_map(|v| v.to_le_bytes()).collect())
    }

    /// f16 values as the `Format::F16` kernels read them: packed two to a 32-bit word.
    pub fn upload_f16(&self, label: &str, data: &[half::f16]) -> wgpu::Buffer {
        self.upload_bytes(label, data.iter().flat_map(|v| v.to_le_bytes()).collect())
    }

    /// A q8 matrix (`crate::matrix::quantize_q8`) as the `Format::Q8` kernels read it: the
    /// integers packed four to a 32-bit word (padded to a whole word), then the rows' scales;
    /// and the word where the scales begin (the kernels' `p.scales`).
    pub fn upload_q8(&self, label: &str, q: &[i8], scales: &[f32]) -> (wgpu::Buffer, u32) {
        let mut bytes: Vec<u8> = q.iter().map(|&v| v as u8).collect();
        bytes.resize(q.len().next_multiple_of(4), 0);
        let at = (bytes.len() / 4) as u32;
        bytes.extend(scales.iter().flat_map(|s| s.to_le_bytes()));
        (self.upload_bytes(label, bytes), at)
    }

    fn upload_bytes(&self, label: &str, mut bytes: Vec<u8>) -> wgpu::Buffer {
        // Storage buffers hold whole 32-bit words, and none may be empty.
        bytes.resize(bytes.len().max(4).next_multiple_of(4), 0);
        self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: &bytes,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        })
    }

    /// Writes `data` at `offset` bytes before the next submission's commands run.
    pub fn write(&self, buffer: &wgpu::Buffer, offset: u64, data: &[u8]) {
        self.count(|c| c.bytes_uploaded += data.len() as u64);
        self.queue.write_buffer(buffer, offset, data);
    }

    /// Records a launch of `kernel` with uniform `params` over `buffers` (binding order).
    pub fn launch(&self, kernel: Kernel, params: &impl Uniform, buffers: &[&wgpu::Buffer], groups: (u32, u32)) {
        debug_assert_eq!(buffers.len(), kernel.storage_bindings());
        if self.recording.borrow().params.len() as u64 >= SLOT * SLOTS {
            self.submit();
        }
        let offset = {
            let mut recording = self.recording.borrow_mut();
            let offset = recording.params.len();
            params.write_to(&mut recording.params);
            recording.params.resize(offset + SLOT as usize, 0);
            offset as u32
        };
        let pipeline = self.pipelines[kernel.index()].get_or_init(|| Self::pipeline(&self.device, kernel));
        let key = (kernel.index(), buffers.iter().map(|&b| b.clone()).collect::<Vec<_>>());
        let mut bind_groups = self.bind_groups.borrow_mut();
        let bind_group = bind_groups.entry(key).or_insert_with(|| {
            let mut entries = vec![wgpu::BindGroupEntry {
                binding: 0,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: &self.arena,
                    offset: 0,
                    size: NonZeroU64::new(SLOT),
                }),
            }];
            entries.extend(
                buffers.iter().enumerate().map(|(i, b)| wgpu::BindGroupEntry { binding: i as u32 + 1, resource: b.as_entire_binding() }),
            );
            self.device.create_bind_group(&wgpu::BindGroupDescriptor { label: None, layout: &pipeline.layout, entries: &entries })
        });
        self.count(|c| c.launches += 1);
        let mut recording = self.recording.borrow_mut();
        let pass = recording.pass(&self.device);
        pass.set_pipeline(&pipeline.pipeline);
        pass.set_bind_group(0, &*bind_group, &[offset]);
        pass.dispatch_workgroups(groups.0, groups.1, 1);
    }

    /// Forgets the bind groups of launches so far (so the buffers they hold can be freed).
    pub fn forget_bind_groups(&self) {
        self.bind_groups.borrow_mut().clear();
    }

    /// Records a copy of `bytes` between buffers.
    pub fn copy(&self, from: &wgpu::Buffer, from_offset: u64, to: &wgpu::Buffer, to_offset: u64, bytes: u64) {
        if bytes > 0 {
            self.recording.borrow_mut().encoder(&self.device).copy_buffer_to_buffer(from, from_offset, to, to_offset, bytes);
        }
    }

    /// Submits everything recorded so far.
    pub fn submit(&self) -> Option<wgpu::SubmissionIndex> {
        let mut recording = self.recording.borrow_mut();
        if !recording.params.is_empty() {
            self.count(|c| c.bytes_uploaded += recording.params.len() as u64);
            self.queue.write_buffer(&self.arena, 0, &recording.params);
            recording.params.clear();
        }
        recording.pass = None;
        let encoder = recording.encoder.take()?;
        self.count(|c| c.submissions += 1);
        Some(self.queue.submit([encoder.finish()]))
    }

    /// Destroys the device now, as a driver reset or a lost GPU would: its memory is freed
    /// and every later step fails with the device-lost error. For pages that must give the
    /// GPU back at once, and for tests of what a user sees when the device goes away.
    pub fn destroy(&self) {
        self.device.destroy();
    }

    /// A handle on this device that can destroy it from outside the model (a running
    /// generation holds the model; the handle does not).
    pub fn handle(&self) -> DeviceHandle {
        DeviceHandle { device: self.device.clone(), fault: self.fault.clone() }
    }

    /// Fails with the first error the device reported, if any.
    pub fn check(&self) -> Result<()> {
        match self.fault.lock().ok().and_then(|s| s.clone()) {
            Some(Fault::Error(e)) => Err(gpu_error(format!("{e}; load the model again, or use the CPU backend (device \"cpu\")"))),
            Some(Fault::Lost(detail)) => Err(Error::DeviceLost(detail)),
            None => Ok(()),
        }
    }

    /// Submits the recorded work and reads `bytes` from the start of `buffer`.
    pub async fn read(&self, buffer: &wgpu::Buffer, bytes: u64) -> Result<Vec<u8>> {
        self.wait(self.read_later(buffer, bytes)).await
    }

    /// Submits the recorded work with a copy of `bytes` from the start of `buffer` and asks
    /// for it to be mapped, without waiting: work submitted after it keeps the device busy
    /// until `wait` is called.
    pub fn read_later(&self, buffer: &wgpu::Buffer, bytes: u64) -> Readback {
        let reusable = self.staging.lock().ok().and_then(|mut pool| pool.iter().position(|b| b.size() >= bytes).map(|i| pool.swap_remove(i)));
        let staging = reusable.unwrap_or_else(|| {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("readback"),
                size: bytes.next_multiple_of(SLOT),
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        });
        self.copy(buffer, 0, &staging, 0, bytes);
        // Natively `wait` polls the device until this submission is done; a browser needs
        // no help.
        #[cfg(not(target_arch = "wasm32"))]
        let submission = self.submit();
        #[cfg(target_arch = "wasm32")]
        self.submit();
        let mapped = Mapped::default();
        let done = mapped.0.clone();
        staging.map_async(wgpu::MapMode::Read, ..bytes, move |r| {
            if let Ok(mut s) = done.lock() {
                s.0 = Some(r.map_err(|e| e.to_string()));
                if let Some(w) = s.1.take() {
                    w.wake();
                }
            }
        });
        Readback {
            staging: Some(staging),
            bytes,
            #[cfg(not(target_arch = "wasm32"))]
            submission,
            mapped,
            pool: self.staging.clone(),
        }
    }

    /// The bytes of a `read_later`, once the device has produced them.
    pub async fn wait(&self, mut readback: Readback) -> Result<Vec<u8>> {
        // Natively the callback runs inside poll; in a browser it runs from the event loop.
        #[cfg(not(target_arch = "wasm32"))]
        if let Err(e) = self.device.poll(wgpu::PollType::Wait { submission_index: readback.submission.clone(), timeout: None }) {
            // A lost device fails its submissions, so there is nothing to wait for.
            self.check()?;
            return Err(gpu_error(e));
        }
        if let Err(e) = (&mut readback.mapped).await {
            // Nothing is mapped, so nothing to give back to the pool.
            readback.staging = None;
            return Err(self.failed(format!("reading a result back failed: {e}")).await);
        }
        self.check()?;
        let bytes = readback.bytes;
        self.count(|c| {
            c.readbacks += 1;
            c.bytes_read += bytes;
        });
        let staging = readback.staging.as_ref().ok_or_else(|| gpu_error("a readback lost its staging buffer"))?;
        // The device can be lost between the mapping and this read (a page's `loseDevice` runs
        // between tasks), which fails the read as well.
        let range = staging.get_mapped_range(..bytes).map(|view| view.to_vec());
        match range {
            Ok(data) => Ok(data),
            Err(e) => Err(self.failed(e.to_string()).await),
        }
    }

    /// The error for a failed readback: the device's loss when that is the cause (its own
    /// error says more; in a browser its notice can come a few turns of the event loop after
    /// the failure), else `what`.
    async fn failed(&self, what: String) -> Error {
        #[cfg(target_arch = "wasm32")]
        for _ in 0..LOST_NOTICE_TURNS {
            if self.check().is_err() {
                break;
            }
            next_task().await;
        }
        self.check().err().unwrap_or_else(|| gpu_error(what))
    }
}

/// A result on its way back from the device (`Gpu::read_later`). Its staging buffer goes
/// back to the pool when it is dropped, read or not.
pub struct Readback {
    staging: Option<wgpu::Buffer>,
    bytes: u64,
    #[cfg(not(target_arch = "wasm32"))]
    submission: Option<wgpu::SubmissionIndex>,
    mapped: Mapped,
    pool: Arc<Mutex<Vec<wgpu::Buffer>>>,
}

impl Drop for Readback {
    fn drop(&mut self) {
        let Some(staging) = self.staging.take() else { return };
        // Mapped or still waiting to be: unmapping frees it for the next read. A mapping
        // that failed leaves nothing to unmap (and the buffer is not reused).
        let failed = self.mapped.0.lock().map_or(true, |s| matches!(s.0, Some(Err(_))));
        if !failed {
            staging.unmap();
            if let Ok(mut pool) = self.pool.lock() {
                pool.push(staging);
            }
        }
    }
}

/// Turns of a browser's event loop to wait for the device-lost notice after a failed
/// mapping (each a `setTimeout(0)`, a few milliseconds; only on that error path).
#[cfg(target_arch = "wasm32")]
const LOST_NOTICE_TURNS: usize = 20;

/// Resolves after the browser ran the tasks queued before it (a `setTimeout(0)`, through
/// the global object, so it works in pages and workers alike).
#[cfg(target_arch = "wasm32")]
async fn next_task() {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        let global = js_sys::global();
        if let Ok(set_timeout) = js_sys::Reflect::get(&global, &"setTimeout".into()).and_then(wasm_bindgen::JsCast::dyn_into::<js_sys::Function>) {
            let _ = set_timeout.call2(&global, &resolve, &0.into());
        } else {
            let _ = resolve.call0(&global);
        }
    });
    let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
}

/// The outcome of a `map_async` once its callback fired, and who to wake then.
type MapSlot = (Option<std::result::Result<(), String>>, Option<Waker>);

/// Resolves when a `map_async` callback fires.
#[derive(Default)]
struct Mapped(Arc<Mutex<MapSlot>>);

impl Future for Mapped {
    type Output = std::result::Result<(), String>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut s = self.0.lock().map_err(|_| "the readback state was poisoned".to_string())?;
        match s.0.take() {
            Some(r) => Poll::Ready(r),
            None => {
                s.1 = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}
