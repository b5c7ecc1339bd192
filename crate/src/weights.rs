//! `model.safetensors` from bytes (the same path natively and in the browser), stored as
//! f32, f16 or bf16 and widened to f32 for compute (weight matrices may stay f16: see
//! `crate::matrix`). Tensors are taken by name with their
//! expected shape, and whatever the model did not take is reported, so a checkpoint that
//! disagrees with its `config.json` fails at load with the tensor named.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};

use candle_core::{DType, Device, Tensor};

use crate::error::{Error, ModelFile, Result};
use crate::matrix::{Dtype, Matrix};

pub struct Weights {
    tensors: HashMap<String, Tensor>,
    taken: RefCell<BTreeSet<String>>,
}

impl Weights {
    pub fn from_bytes(bytes: &[u8], device: &Device) -> Result<Self> {
        // Read the header ourselves first: candle's loader gives terse errors for a
        // truncated file, and the dtype check wants each tensor's name.
        let st = safetensors::SafeTensors::deserialize(bytes).map_err(|e| Error::Malformed {
            file: ModelFile::Weights,
            reason: format!("{e}; the file is truncated or not a safetensors file"),
        })?;
        let mut tensors = HashMap::with_capacity(st.len());
        for (name, view) in st.tensors() {
            let dtype = match view.dtype() {
                safetensors::Dtype::F32 => DType::F32,
                safetensors::Dtype::F16 => DType::F16,
                safetensors::Dtype::BF16 => DType::BF16,
                other => {
                    return Err(Error::UnsupportedDtype { name, dtype: format!("{other:?}") })
                }
            };
            let t = Tensor::from_raw_buffer(view.data(), dtype, view.shape(), device)?;
            tensors.insert(name, t);
        }
        Ok(Weights { tensors, taken: RefCell::new(BTreeSet::new()) })
    }

    /// The tensor `name`, which must have shape `shape`, as f32.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        Ok(self.stored(name, shape)?.to_dtype(DType::F32)?)
    }

    /// The (rows, cols) weight matrix `name` held as `dtype` asks, or without one as stored:
    /// f16 kept as f16 (where the CPU widens f16 fast), anything else as f32.
    pub fn matrix(&self, name: &str, rows: usize, cols: usize, dtype: Option<Dtype>) -> Result<Matrix> {
        let t = self.stored(name, &[rows, cols])?.flatten_all()?;
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
        let t = self.stored(name, shape)?;
        Ok(if t.dtype() == DType::F16 { Some(t.flatten_all()?.to_vec1()?) } else { None })
    }

    fn stored(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
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

    /// The first of `names` present (tied weights may be stored under either name).
    pub fn get_any(&self, names: &[&str], shape: &[usize]) -> Result<Tensor> {
        let found = names.iter().find(|n| self.tensors.contains_key(**n));
        self.get(found.copied().unwrap_or(names[0]), shape)
    }

    /// Whether `name` is stored as f16 (false when it is absent).
    pub fn is_f16(&self, name: &str) -> bool {
        self.tensors.get(name).is_some_and(|t| t.dtype() == DType::F16)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    fn find(&self, name: &str) -> Result<Tensor> {
        let t = self
            .tensors
            .get(name)
            .ok_or_else(|| Error::MissingTensor { name: name.to_string() })?;
        self.taken.borrow_mut().insert(name.to_string());
        Ok(t.clone())
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

    #[test]
    fn truncated_file_is_malformed_not_a_panic() {
        let bytes = file_with(&[("w", safetensors::Dtype::F32, vec![4], vec![0; 16])]);
        for cut in [0, 7, 8, 20, bytes.len() - 1] {
            let err = Weights::from_bytes(&bytes[..cut], &Device::Cpu).err().unwrap();
            assert!(matches!(err, Error::Malformed { file: ModelFile::Weights, .. }), "{cut}: {err}");
        }
    }
}
