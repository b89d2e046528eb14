//! Re-quantisation at load time. candle has SIMD kernels for Q8_0 but not for Q4_1, Q5_0
//! or Q5_1, so weights stored in those run about 3× slower than they need to. The reader
//! here presents the GGUF's tensor data as if those tensors were stored as Q8_0: each one
//! is converted when candle reads it, one tensor at a time, so no second copy of the
//! file is ever held in memory.

use std::io::{self, Read, Seek, SeekFrom};

use candle_core::quantized::gguf_file::Content;
use candle_core::quantized::{GgmlDType, QTensor, ggml_file};
use candle_core::{Device, Shape};

/// Storage types without a fast CPU kernel in candle, converted to [`TARGET`].
const SLOW: &[GgmlDType] = &[GgmlDType::Q4_1, GgmlDType::Q5_0, GgmlDType::Q5_1];
const TARGET: GgmlDType = GgmlDType::Q8_0;
const ALIGN: u64 = 32;

/// One tensor's place in the presented data, and where its bytes really are.
#[derive(Debug)]
struct Slot {
    start: u64,
    len: u64,
    src_offset: u64,
    src_dtype: GgmlDType,
    shape: Shape,
    convert: bool,
}

/// A `Read + Seek` over the tensor data of a GGUF whose slow tensors read as Q8_0.
#[derive(Debug)]
pub(crate) struct Requantized<R> {
    inner: R,
    data_offset: u64,
    slots: Vec<Slot>,
    total: u64,
    pos: u64,
    /// The converted bytes of the tensor read last.
    cache: Option<(usize, Vec<u8>)>,
}

fn size_of(dtype: GgmlDType, shape: &Shape) -> u64 {
    (shape.elem_count() / dtype.block_size() * dtype.type_size()) as u64
}

/// Rewrites `content`'s tensor table to describe the presented data (offsets from 0,
/// converted types) and returns the reader that presents it; the number of tensors
/// converted comes with it.
pub(crate) fn requantize<R: Read + Seek>(
    content: &mut Content,
    inner: R,
) -> (Requantized<R>, usize) {
    let mut names: Vec<String> = content.tensor_infos.keys().cloned().collect();
    names.sort_by_key(|n| content.tensor_infos.get(n).map_or(0, |t| t.offset));
    let mut slots = Vec::with_capacity(names.len());
    let mut next = 0u64;
    let mut converted = 0;
    for name in &names {
        let Some(info) = content.tensor_infos.get_mut(name) else {
            continue;
        };
        let convert = SLOW.contains(&info.ggml_dtype)
            && info
                .shape
                .dims()
                .last()
                .is_some_and(|d| d % TARGET.block_size() == 0);
        let dtype = if convert { TARGET } else { info.ggml_dtype };
        let len = size_of(dtype, &info.shape);
        slots.push(Slot {
            start: next,
            len,
            src_offset: info.offset,
            src_dtype: info.ggml_dtype,
            shape: info.shape.clone(),
            convert,
        });
        converted += usize::from(convert);
        info.ggml_dtype = dtype;
        info.offset = next;
        next = (next + len).div_ceil(ALIGN) * ALIGN;
    }
    let data_offset = content.tensor_data_offset;
    content.tensor_data_offset = 0;
    let reader = Requantized {
        inner,
        data_offset,
        slots,
        total: next,
        pos: 0,
        cache: None,
    };
    (reader, converted)
}

impl<R: Read + Seek> Requantized<R> {
    fn slot_at(&self, pos: u64) -> Option<usize> {
        let i = self.slots.partition_point(|s| s.start <= pos);
        let i = i.checked_sub(1)?;
        (pos < self.slots[i].start + self.slots[i].len).then_some(i)
    }

    fn converted(&mut self, i: usize) -> io::Result<&[u8]> {
        if self.cache.as_ref().is_none_or(|(c, _)| *c != i) {
            let slot = &self.slots[i];
            let mut raw = vec![0u8; size_of(slot.src_dtype, &slot.shape) as usize];
            self.inner
                .seek(SeekFrom::Start(self.data_offset + slot.src_offset))?;
            self.inner.read_exact(&mut raw)?;
            let bytes = convert(slot.src_dtype, &raw, &slot.shape).map_err(io::Error::other)?;
            self.cache = Some((i, bytes));
        }
        Ok(self.cache.as_ref().map_or(&[], |(_, b)| b.as_slice()))
    }
}

fn convert(dtype: GgmlDType, raw: &[u8], shape: &Shape) -> candle_core::Result<Vec<u8>> {
    let src = ggml_file::qtensor_from_ggml(dtype, raw, shape.dims().to_vec(), &Device::Cpu)?;
    let f32s = src.dequantize(&Device::Cpu)?;
    Ok(QTensor::quantize(&f32s, TARGET)?.data()?.into_owned())
}

impl<R: Read + Seek> Read for Requantized<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.total || buf.is_empty() {
            return Ok(0);
        }
        let n = match self.slot_at(self.pos) {
            // Alignment padding between tensors.
            None => {
                let next = self
                    .slots
                    .iter()
                    .map(|s| s.start)
                    .find(|&s| s > self.pos)
                    .unwrap_or(self.total);
                let n = buf.len().min((next - self.pos) as usize);
                buf[..n].fill(0);
                n
            }
            Some(i) => {
                let (start, len, src_offset, convert) = {
                    let s = &self.slots[i];
                    (s.start, s.len, s.src_offset, s.convert)
                };
                let within = self.pos - start;
                let n = buf.len().min((len - within) as usize);
                if convert {
                    let bytes = self.converted(i)?;
                    buf[..n].copy_from_slice(&bytes[within as usize..within as usize + n]);
                    n
                } else {
                    self.inner
                        .seek(SeekFrom::Start(self.data_offset + src_offset + within))?;
                    self.inner.read(&mut buf[..n])?
                }
            }
        };
        self.pos += n as u64;
        Ok(n)
    }
}

impl<R: Read + Seek> Seek for Requantized<R> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let pos = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.total.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = pos.ok_or_else(|| io::Error::other("seek before the start of the data"))?;
        Ok(self.pos)
    }
}
