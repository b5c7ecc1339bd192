//! `model.safetensors` from bytes (the same path natively and in the browser), stored as
//! f32, f16 or bf16 and widened to f32 for compute (weight matrices may stay f16: see
//! `crate::matrix`), or with weight matrices stored in 8 bits: an I8 tensor `X` (rows, cols)
//! beside `X_scale`, one float per row (docs/usage.md#8-bit-checkpoints). Tensors are taken by
//! name with their expected shape, and whatever the model did not take is reported, so a
//! checkpoint that disagrees with its `config.json` fails at load with the tensor named.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};

use candle_core::{DType, Device, Tensor};
use safetensors::tensor::TensorView;

use crate::error::{Error, ModelFile, Result};
use crate::matrix::{Dtype, Matrix};

/// The name of the scales of the 8-bit matrix `X` is `X` followed by this.
pub const Q8_SCALE_SUFFIX: &str = "_scale";

/// A tensor as the file stores it.
enum Stored {
    Float(Tensor),
    /// An 8-bit matrix: row j is `q[j * cols..]` times `scales[j]` (each finite and positive).
    Q8 { dims: [usize; 2], q: Vec<i8>, scales: Vec<f32> },
}

impl Stored {
    fn dims(&self) -> &[usize] {
        match self {
            Stored::Float(t) => t.dims(),
            Stored::Q8 { dims, .. } => dims,
        }
    }
}

pub struct Weights {
    tensors: HashMap<String, Stored>,
    taken: RefCell<BTreeSet<String>>,
    device: Device,
}

impl Weights {
    pub fn from_bytes(bytes: &[u8], device: &Device) -> Result<Self> {
        // Read the header ourselves first: candle's loader gives terse errors for a
        // truncated file, and the dtype check wants each tensor's name.
        let st = safetensors::SafeTensors::deserialize(bytes).map_err(|e| Error::Malformed {
            file: ModelFile::Weights,
            reason: format!("{e}; the file is truncated or not a safetensors file"),
        })?;
        let views: HashMap<String, TensorView> = st.tensors().into_iter().collect();
        // In name order, so that of several faults the same one is reported every time.
        let mut names: Vec<&String> = views.keys().collect();
        names.sort();
        let mut tensors = HashMap::with_capacity(views.len());
        for name in names {
            let view = &views[name];
            let stored = if view.dtype() == safetensors::Dtype::I8 {
                q8(name, view, views.get(&format!("{name}{Q8_SCALE_SUFFIX}")))?
            } else if let Some(matrix) = name.strip_suffix(Q8_SCALE_SUFFIX) {
                match views.get(matrix).map(|m| m.dtype()) {
                    Some(safetensors::Dtype::I8) => continue, // read with its matrix
                    other => return Err(orphan_scale(name, matrix, other)),
                }
            } else {
                Stored::Float(float(name, view, device)?)
            };
            tensors.insert(name.clone(), stored);
        }
        Ok(Weights { tensors, taken: RefCell::new(BTreeSet::new()), device: device.clone() })
    }

    /// The tensor `name`, which must have shape `shape`, as f32 (an 8-bit matrix
    /// dequantized).
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        Ok(self.tensor(self.stored(name, shape)?)?.to_dtype(DType::F32)?)
    }

    /// `get` for a tensor the model reads only as float (a position bias table): one stored
    /// in 8 bits is refused, as the exporter never writes it so.
    pub fn get_float(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        match self.stored(name, shape)? {
            Stored::Float(t) => Ok(t.to_dtype(DType::F32)?),
            Stored::Q8 { .. } => Err(Error::Q8Tensor {
                name: name.to_string(),
                reason: "it is I8 but the model reads it as float (only weight matrices may be stored in 8 bits; norms and position bias tables stay f32 or f16)".into(),
            }),
        }
    }

    /// The (rows, cols) weight matrix `name` held as `dtype` asks, or without one as stored:
    /// f16 kept as f16 (where the CPU widens f16 fast), 8-bit as 8-bit, anything else as f32.
    /// An 8-bit matrix asked for as f32 or f16 is dequantized.
    pub fn matrix(&self, name: &str, rows: usize, cols: usize, dtype: Option<Dtype>) -> Result<Matrix> {
        let stored = self.stored(name, &[rows, cols])?;
        if let (Stored::Q8 { q, scales, .. }, None | Some(Dtype::Q8)) = (stored, dtype) {
            return Ok(Matrix::from_q8(rows, cols, q.clone(), scales.clone()));
        }
        let t = self.tensor(stored)?.flatten_all()?;
        let target = dtype.unwrap_or(if t.dtype() == DType::F16 { Dtype::F16 } else { Dtype::F32 });
        Ok(match target {
            Dtype::F16 => Matrix::from_f16(rows, cols, t.to_dtype(DType::F16)?.to_vec1()?),
            Dtype::F32 => Matrix::from_f32(rows, cols, t.to_dtype(DType::F32)?.to_vec1()?),
            Dtype::Q8 => Matrix::quantize_q8(rows, cols, &t.to_dtype(DType::F32)?.to_vec1::<f32>()?),
        })
    }

    /// The values of `name` (which must have shape `shape`) when it is stored as f16, which
    /// the GPU backend keeps packed; None when it is stored otherwise.
    pub fn f16s(&self, name: &str, shape: &[usize]) -> Result<Option<Vec<half::f16>>> {
        Ok(match self.stored(name, shape)? {
            Stored::Float(t) if t.dtype() == DType::F16 => Some(t.flatten_all()?.to_vec1()?),
            _ => None,
        })
    }

    fn stored(&self, name: &str, shape: &[usize]) -> Result<&Stored> {
        let t = self.find(name)?;
        if t.dims() != shape {
            return Err(Error::TensorShape {
                name: name.to_string(),
                expected: shape.to_vec(),
                found: t.dims().to_vec(),
            });
        }
        Ok(t)
    }

    /// A stored tensor as candle holds it: a float one as stored, an 8-bit one dequantized
    /// to f32 (each value `q * scale` in f32, as `Matrix::row` widens it).
    fn tensor(&self, stored: &Stored) -> Result<Tensor> {
        Ok(match stored {
            Stored::Float(t) => t.clone(),
            Stored::Q8 { dims, q, scales } => {
                let values = q.chunks_exact(dims[1].max(1)).zip(scales).flat_map(|(row, s)| row.iter().map(move |&v| v as f32 * s));
                Tensor::from_vec(values.collect::<Vec<f32>>(), dims.as_slice(), &self.device)?
            }
        })
    }

    /// The first of `names` present (tied weights may be stored under either name).
    pub fn get_any(&self, names: &[&str], shape: &[usize]) -> Result<Tensor> {
        let found = names.iter().find(|n| self.tensors.contains_key(**n));
        self.get(found.copied().unwrap_or(names[0]), shape)
    }

    /// The integers and row scales of `name` (which must have shape `shape`) when it is
    /// stored in 8 bits, which the GPU backend uploads as they are; None when it is stored
    /// otherwise.
    pub fn q8s(&self, name: &str, shape: &[usize]) -> Result<Option<(Vec<i8>, Vec<f32>)>> {
        Ok(match self.stored(name, shape)? {
            Stored::Q8 { q, scales, .. } => Some((q.clone(), scales.clone())),
            Stored::Float(_) => None,
        })
    }

    /// Whether `name` is stored in 8 bits (false when it is absent).
    pub fn is_q8(&self, name: &str) -> bool {
        matches!(self.tensors.get(name), Some(Stored::Q8 { .. }))
    }

    /// Whether `name` is stored as f16 (false when it is absent).
    pub fn is_f16(&self, name: &str) -> bool {
        matches!(self.tensors.get(name), Some(Stored::Float(t)) if t.dtype() == DType::F16)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    fn find(&self, name: &str) -> Result<&Stored> {
        let t = self
            .tensors
            .get(name)
            .ok_or_else(|| Error::MissingTensor { name: name.to_string() })?;
        self.taken.borrow_mut().insert(name.to_string());
        Ok(t)
    }

    /// Fails when tensors remain that the model did not take, except `ignorable` ones
    /// (HF stores copies of tied embeddings under several names).
    pub fn finish(self, ignorable: &[&str]) -> Result<()> {
        let taken = self.taken.into_inner();
        let mut left: Vec<&String> = self
            .tensors
            .keys()
            .filter(|k| !taken.contains(*k) && !ignorable.contains(&k.as_str()))
            .collect();
        left.sort();
        match left.first() {
            None => Ok(()),
            Some(first) => {
                Err(Error::UnexpectedTensors { example: (*first).clone(), count: left.len() })
            }
        }
    }
}

/// A float tensor as stored (f32, f16 or bf16).
fn float(name: &str, view: &TensorView, device: &Device) -> Result<Tensor> {
    let dtype = match view.dtype() {
        safetensors::Dtype::F32 => DType::F32,
        safetensors::Dtype::F16 => DType::F16,
        safetensors::Dtype::BF16 => DType::BF16,
        other => return Err(Error::UnsupportedDtype { name: name.to_string(), dtype: format!("{other:?}") }),
    };
    Ok(Tensor::from_raw_buffer(view.data(), dtype, view.shape(), device)?)
}

/// The I8 matrix `name` with its scales `scale` (None: the file has none), checked against
/// the layout: (rows, cols) integers, `[rows]` floats, every scale finite and positive (a
/// zero scale would make the row's integers meaningless, a negative one flip its sign).
fn q8(name: &str, view: &TensorView, scale: Option<&TensorView>) -> Result<Stored> {
    let fault = |reason: String| Error::Q8Tensor { name: name.to_string(), reason };
    let scale_name = format!("{name}{Q8_SCALE_SUFFIX}");
    let &[rows, cols] = view.shape() else {
        return Err(fault(format!(
            "it is I8 of shape {:?}, but only (rows, cols) weight matrices may be stored in 8 bits (norms and position bias tables stay f32 or f16)",
            view.shape()
        )));
    };
    let scale = scale.ok_or_else(|| fault(format!("it is I8 but the file has no `{scale_name}` (one f32 scale per row) beside it")))?;
    if scale.shape() != [rows] {
        return Err(fault(format!("its scales `{scale_name}` have shape {:?}, not [{rows}] (one per row)", scale.shape())));
    }
    if !matches!(scale.dtype(), safetensors::Dtype::F32 | safetensors::Dtype::F16 | safetensors::Dtype::BF16) {
        return Err(fault(format!("its scales `{scale_name}` are {:?}, not f32 (or f16, bf16)", scale.dtype())));
    }
    let scales: Vec<f32> = float(&scale_name, scale, &Device::Cpu)?.to_dtype(DType::F32)?.to_vec1()?;
    if let Some((row, s)) = scales.iter().enumerate().find(|(_, s)| !(s.is_finite() && **s > 0.0)) {
        return Err(fault(format!("row {row}'s scale is {s}; every scale must be finite and positive (a row of zeros takes scale 1)")));
    }
    let q = view.data().iter().map(|&b| b as i8).collect();
    Ok(Stored::Q8 { dims: [rows, cols], q, scales })
}

/// The error for a scale tensor `name` whose matrix `matrix` is absent (`dtype` None) or not
/// stored as I8.
fn orphan_scale(name: &str, matrix: &str, dtype: Option<safetensors::Dtype>) -> Error {
    let what = match dtype {
        None => "the file has no such tensor".to_string(),
        Some(d) => format!("that tensor is {d:?}, not I8"),
    };
    Error::Q8Tensor {
        name: name.to_string(),
        reason: format!("its name makes it the scales of the 8-bit matrix `{matrix}`, but {what}"),
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;
    use super::*;

    fn file_with(tensors: &[(&str, safetensors::Dtype, Vec<usize>, Vec<u8>)]) -> Vec<u8> {
        let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
            .iter()
            .map(|(n, dt, shape, data)| {
                (n.to_string(), safetensors::tensor::TensorView::new(*dt, shape.clone(), data).unwrap())
            })
            .collect();
        safetensors::serialize(views, None).unwrap()
    }

    #[test]
    fn reads_f16_and_bf16_as_f32() {
        let halves: Vec<u8> =
            [1.5f32, -2.0].iter().flat_map(|v| half::f16::from_f32(*v).to_le_bytes()).collect();
        let brains: Vec<u8> =
            [0.25f32, 4.0].iter().flat_map(|v| half::bf16::from_f32(*v).to_le_bytes()).collect();
        let bytes = file_with(&[
            ("a", safetensors::Dtype::F16, vec![2], halves),
            ("b", safetensors::Dtype::BF16, vec![1, 2], brains),
        ]);
        let w = Weights::from_bytes(&bytes, &Device::Cpu).unwrap();
        assert_eq!(w.get("a", &[2]).unwrap().to_vec1::<f32>().unwrap(), vec![1.5, -2.0]);
        assert_eq!(w.get("b", &[1, 2]).unwrap().to_vec2::<f32>().unwrap(), vec![vec![0.25, 4.0]]);
        w.finish(&[]).unwrap();
    }

    #[test]
    fn errors_name_the_tensor_and_the_problem() {
        let bytes = file_with(&[
            ("w", safetensors::Dtype::F32, vec![2], vec![0; 8]),
            ("extra", safetensors::Dtype::F32, vec![1], vec![0; 4]),
            ("ints", safetensors::Dtype::I64, vec![1], vec![0; 8]),
        ]);
        let err = Weights::from_bytes(&bytes, &Device::Cpu).err().unwrap();
        assert!(matches!(&err, Error::UnsupportedDtype { name, .. } if name == "ints"), "{err}");

        let bytes = file_with(&[
            ("w", safetensors::Dtype::F32, vec![2], vec![0; 8]),
            ("extra", safetensors::Dtype::F32, vec![1], vec![0; 4]),
        ]);
        let w = Weights::from_bytes(&bytes, &Device::Cpu).unwrap();
        let err = w.get("w", &[3]).unwrap_err();
        assert!(matches!(&err, Error::TensorShape { found, .. } if found == &vec![2]), "{err}");
        let err = w.get("nope", &[1]).unwrap_err();
        assert!(matches!(&err, Error::MissingTensor { name } if name == "nope"), "{err}");
        let err = w.finish(&[]).unwrap_err();
        assert!(matches!(&err, Error::UnexpectedTensors { example, count: 1 } if example == "extra"));
    }

    fn f32_bytes(values: &[f32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    fn i8_bytes(values: &[i8]) -> Vec<u8> {
        values.iter().map(|&v| v as u8).collect()
    }

    /// A (2, 3) 8-bit matrix `m` and its scales, and a float norm `n`.
    fn q8_file(scale: (safetensors::Dtype, Vec<usize>, Vec<u8>)) -> Vec<u8> {
        file_with(&[
            ("m", safetensors::Dtype::I8, vec![2, 3], i8_bytes(&[127, -64, 0, 1, -127, 5])),
            ("m_scale", scale.0, scale.1, scale.2),
            ("n", safetensors::Dtype::F32, vec![2], f32_bytes(&[1.0, 2.0])),
        ])
    }

    #[test]
    fn q8_matrices_load_as_stored_or_dequantized() {
        let bytes = q8_file((safetensors::Dtype::F32, vec![2], f32_bytes(&[0.5, 0.25])));
        let w = Weights::from_bytes(&bytes, &Device::Cpu).unwrap();
        let rows = [vec![63.5, -32.0, 0.0], vec![0.25, -31.75, 1.25]];
        for dtype in [None, Some(Dtype::Q8), Some(Dtype::F32), Some(Dtype::F16)] {
            let m = w.matrix("m", 2, 3, dtype).unwrap();
            assert_eq!([m.row(0), m.row(1)], rows, "{dtype:?}");
        }
        assert_eq!(w.get("m", &[2, 3]).unwrap().to_vec2::<f32>().unwrap(), rows);
        assert_eq!(w.f16s("m", &[2, 3]).unwrap(), None);
        assert!(!w.is_f16("m"));
        assert_eq!(w.get("n", &[2]).unwrap().to_vec1::<f32>().unwrap(), vec![1.0, 2.0]);
        // The scales went with their matrix: nothing is left over.
        w.finish(&[]).unwrap();

        let halves: Vec<u8> = [0.5f32, 0.25].iter().flat_map(|v| half::f16::from_f32(*v).to_le_bytes()).collect();
        let w = Weights::from_bytes(&q8_file((safetensors::Dtype::F16, vec![2], halves)), &Device::Cpu).unwrap();
        assert_eq!(w.get("m", &[2, 3]).unwrap().to_vec2::<f32>().unwrap(), rows);
    }

    /// The Q8Tensor error of loading `bytes`, checked to name `name`.
    fn q8_fault(bytes: &[u8], name: &str) -> String {
        let err = Weights::from_bytes(bytes, &Device::Cpu).err().expect("the file must be refused");
        assert!(matches!(&err, Error::Q8Tensor { name: n, .. } if n == name), "{err}");
        assert!(err.to_string().starts_with(&format!("tensor `{name}` in model.safetensors is not a valid 8-bit weight: ")), "{err}");
        err.to_string()
    }

    #[test]
    fn q8_layout_faults_name_the_tensor_and_the_fault() {
        use safetensors::Dtype::{F32, I64, I8};
        let no_scale = file_with(&[("m", I8, vec![2, 3], vec![0; 6])]);
        assert!(q8_fault(&no_scale, "m").contains("it is I8 but the file has no `m_scale` (one f32 scale per row) beside it"));
        let msg = q8_fault(&q8_file((F32, vec![3], f32_bytes(&[1.0; 3]))), "m");
        assert!(msg.contains("its scales `m_scale` have shape [3], not [2] (one per row)"), "{msg}");
        let msg = q8_fault(&q8_file((F32, vec![2, 1], f32_bytes(&[1.0; 2]))), "m");
        assert!(msg.contains("have shape [2, 1], not [2]"), "{msg}");
        let msg = q8_fault(&q8_file((I64, vec![2], vec![1; 16])), "m");
        assert!(msg.contains("its scales `m_scale` are I64, not f32 (or f16, bf16)"), "{msg}");
        for (bad, shown) in [(f32::NAN, "NaN"), (f32::INFINITY, "inf"), (0.0, "0"), (-0.5, "-0.5")] {
            let msg = q8_fault(&q8_file((F32, vec![2], f32_bytes(&[1.0, bad]))), "m");
            assert!(msg.contains(&format!("row 1's scale is {shown}; every scale must be finite and positive")), "{msg}");
        }
        let vector = file_with(&[("n", I8, vec![4], vec![0; 4]), ("n_scale", F32, vec![4], f32_bytes(&[1.0; 4]))]);
        assert!(q8_fault(&vector, "n").contains("it is I8 of shape [4], but only (rows, cols) weight matrices may be stored in 8 bits"));
        let orphan = file_with(&[("m_scale", F32, vec![2], f32_bytes(&[1.0; 2]))]);
        assert!(q8_fault(&orphan, "m_scale").contains("the scales of the 8-bit matrix `m`, but the file has no such tensor"));
        let float_matrix =
            file_with(&[("m", F32, vec![2, 1], f32_bytes(&[1.0; 2])), ("m_scale", F32, vec![2], f32_bytes(&[1.0; 2]))]);
        assert!(q8_fault(&float_matrix, "m_scale").contains("but that tensor is F32, not I8"));
    }

    #[test]
    fn q8_matrices_are_checked_against_the_config_and_the_use() {
        let w = Weights::from_bytes(&q8_file((safetensors::Dtype::F32, vec![2], f32_bytes(&[1.0; 2]))), &Device::Cpu).unwrap();
        let err = w.matrix("m", 3, 2, None).err().unwrap();
        assert!(matches!(&err, Error::TensorShape { name, found, .. } if name == "m" && found == &vec![2, 3]), "{err}");
        let err = w.get_float("m", &[2, 3]).unwrap_err();
        assert!(matches!(&err, Error::Q8Tensor { name, reason } if name == "m" && reason.starts_with("it is I8 but the model reads it as float")), "{err}");
        assert_eq!(w.get_float("n", &[2]).unwrap().to_vec1::<f32>().unwrap(), vec![1.0, 2.0]);
    }

    #[test]
    fn truncated_file_is_malformed_not_a_panic() {
        let bytes = file_with(&[("w", safetensors::Dtype::F32, vec![4], vec![0; 16])]);
        for cut in [0, 7, 8, 20, bytes.len() - 1] {
            let err = Weights::from_bytes(&bytes[..cut], &Device::Cpu).err().unwrap();
            assert!(matches!(err, Error::Malformed { file: ModelFile::Weights, .. }), "{cut}: {err}");
        }
    }
}
