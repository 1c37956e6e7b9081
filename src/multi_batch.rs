//! The multi-batch body encoding (spec §3.2): several independent batches of one operation in
//! one request or reply. Elements come first, then a trailer of 0xFF padding, the batch counts
//! in reverse order, and the batch count, all u16 little-endian.
//!
//! Decoding validates the whole trailer once, up front; afterwards batches are borrowed slices of
//! the body, with no copy and no allocation.

use crate::constants::MULTI_BATCH_COUNT_MAX;
use crate::operation::trailer_size;

/// Why a body is not a valid multi-batch encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MultiBatchError {
    /// The body cannot hold even the batch count.
    #[error("body of {size} bytes is too short for a multi-batch trailer")]
    TooShort {
        /// The body size.
        size: usize,
    },
    /// The body is not a whole number of elements.
    #[error("body of {size} bytes is not a multiple of the {element_size}-byte element size")]
    Misaligned {
        /// The body size.
        size: usize,
        /// The element size of the operation.
        element_size: usize,
    },
    /// The batch count is 0 or over the limit.
    #[error("batch count {count} is outside 1..={MULTI_BATCH_COUNT_MAX}")]
    BatchCount {
        /// The batch count read from the trailer.
        count: usize,
    },
    /// A trailer padding byte is not 0xFF.
    #[error("multi-batch trailer padding is not 0xFF")]
    Padding,
    /// The batch counts do not add up to the payload size.
    #[error("batch counts cover {counted} bytes but the payload has {payload} bytes")]
    PayloadSize {
        /// The bytes the counts describe.
        counted: usize,
        /// The bytes before the trailer.
        payload: usize,
    },
}

/// A validated multi-batch body: iterate its batches with [`MultiBatch::batch`].
#[derive(Clone, Copy, Debug)]
pub struct MultiBatch<'a> {
    body: &'a [u8],
    element_size: usize,
    batch_count: usize,
}

impl<'a> MultiBatch<'a> {
    /// Validates `body` as a multi-batch encoding of `element_size`-byte elements.
    pub fn decode(body: &'a [u8], element_size: usize) -> Result<MultiBatch<'a>, MultiBatchError> {
        assert!(element_size.is_power_of_two() && element_size >= 16);
        let size = body.len();
        if size < element_size {
            return Err(MultiBatchError::TooShort { size });
        }
        if !size.is_multiple_of(element_size) {
            return Err(MultiBatchError::Misaligned { size, element_size });
        }
        let batch_count = usize::from(read_u16(body, size - 2));
        if batch_count == 0 || batch_count > MULTI_BATCH_COUNT_MAX {
            return Err(MultiBatchError::BatchCount { count: batch_count });
        }
        let trailer = trailer_size(element_size, batch_count);
        if trailer > size {
            return Err(MultiBatchError::TooShort { size });
        }
        let counts_size = 2 * batch_count + 2;
        if body[size - trailer..size - counts_size].iter().any(|byte| *byte != 0xFF) {
            return Err(MultiBatchError::Padding);
        }
        let batch = MultiBatch { body, element_size, batch_count };
        let counted: usize = (0..batch_count).map(|index| batch.count(index)).sum();
        let payload = size - trailer;
        if counted * element_size != payload {
            return Err(MultiBatchError::PayloadSize { counted: counted * element_size, payload });
        }
        Ok(batch)
    }

    /// The number of batches.
    pub fn batch_count(&self) -> usize {
        self.batch_count
    }

    /// The number of elements of batch `index`.
    pub fn count(&self, index: usize) -> usize {
        assert!(index < self.batch_count);
        usize::from(read_u16(self.body, self.body.len() - 2 - 2 * (index + 1)))
    }

    /// The total number of elements over all batches.
    pub fn element_count(&self) -> usize {
        (self.body.len() - trailer_size(self.element_size, self.batch_count)) / self.element_size
    }

    /// Calls `f(index, bytes)` for each batch in order, where `bytes` holds the batch's elements.
    pub fn for_each(&self, mut f: impl FnMut(usize, &'a [u8])) {
        let mut offset = 0;
        for index in 0..self.batch_count {
            let size = self.count(index) * self.element_size;
            f(index, &self.body[offset..offset + size]);
            offset += size;
        }
    }
}

/// Writes a multi-batch body into a caller-provided buffer without allocating: push each batch's
/// elements, then [`MultiBatchEncoder::finish`].
pub struct MultiBatchEncoder<'a> {
    buffer: &'a mut [u8],
    element_size: usize,
    batch_count: usize,
    batch_index: usize,
    payload_size: usize,
}

impl<'a> MultiBatchEncoder<'a> {
    /// Starts an encoding of `batch_count` batches into `buffer`.
    pub fn new(buffer: &'a mut [u8], element_size: usize, batch_count: usize) -> Self {
        assert!(element_size.is_power_of_two() && element_size >= 16);
        assert!((1..=MULTI_BATCH_COUNT_MAX).contains(&batch_count));
        assert!(buffer.len() >= trailer_size(element_size, batch_count));
        MultiBatchEncoder { buffer, element_size, batch_count, batch_index: 0, payload_size: 0 }
    }

    /// The space left for the elements of the current batch, as bytes.
    pub fn writable(&mut self) -> &mut [u8] {
        let end = self.buffer.len() - trailer_size(self.element_size, self.batch_count);
        &mut self.buffer[self.payload_size..end]
    }

    /// Ends the current batch, which holds the first `count` elements of [`Self::writable`].
    pub fn push(&mut self, count: usize) {
        assert!(self.batch_index < self.batch_count);
        assert!(count <= usize::from(u16::MAX));
        let size = count * self.element_size;
        assert!(size <= self.writable().len());
        self.payload_size += size;
        // Counts are parked at the end of the buffer and moved behind the payload by `finish`.
        let at = self.buffer.len() - 2 - 2 * (self.batch_index + 1);
        self.buffer[at..at + 2].copy_from_slice(&(count as u16).to_le_bytes());
        self.batch_index += 1;
    }

    /// Writes the trailer behind the payload and returns the size of the body.
    pub fn finish(self) -> usize {
        assert_eq!(self.batch_index, self.batch_count);
        let trailer = trailer_size(self.element_size, self.batch_count);
        let counts_size = 2 * self.batch_count + 2;
        let end = self.buffer.len();
        let at = end - 2;
        self.buffer[at..end].copy_from_slice(&(self.batch_count as u16).to_le_bytes());
        let start = self.payload_size;
        self.buffer.copy_within(end - counts_size..end, start + trailer - counts_size);
        self.buffer[start..start + trailer - counts_size].fill(0xFF);
        start + trailer
    }
}

/// Encodes one batch of `elements` (already in `buffer[..elements_size]`) as a single-batch body
/// and returns its size.
pub fn encode_single(buffer: &mut [u8], element_size: usize, element_count: usize) -> usize {
    let mut encoder = MultiBatchEncoder::new(buffer, element_size, 1);
    encoder.push(element_count);
    encoder.finish()
}

fn read_u16(bytes: &[u8], offset: usize) -> u16 {
    u16::from_le_bytes([bytes[offset], bytes[offset + 1]])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(batches: &[&[u8]], element_size: usize) -> Vec<u8> {
        let mut buffer = vec![0u8; 4096];
        let mut encoder = MultiBatchEncoder::new(&mut buffer, element_size, batches.len());
        for batch in batches {
            encoder.writable()[..batch.len()].copy_from_slice(batch);
            encoder.push(batch.len() / element_size);
        }
        let size = encoder.finish();
        buffer.truncate(size);
        buffer
    }

    #[test]
    fn round_trip_with_empty_batches_and_padding() {
        let a = [1u8; 32];
        let b: [u8; 0] = [];
        let c = [3u8; 16];
        let body = encode(&[&a, &b, &c], 16);
        // Payload 48 bytes + trailer ceil((2·3+2)/16)·16 = 16 bytes.
        assert_eq!(body.len(), 64);
        assert_eq!(&body[48..56], &[0xFF; 8]);
        assert_eq!(&body[56..64], &[1, 0, 0, 0, 2, 0, 3, 0]);
        let decoded = MultiBatch::decode(&body, 16).unwrap();
        assert_eq!(decoded.batch_count(), 3);
        assert_eq!(decoded.element_count(), 3);
        let mut seen = Vec::new();
        decoded.for_each(|index, bytes| seen.push((index, bytes.to_vec())));
        assert_eq!(seen, vec![(0, a.to_vec()), (1, vec![]), (2, c.to_vec())]);
    }

    #[test]
    fn invalid_trailers_are_rejected() {
        let body = encode(&[&[7u8; 128]], 128);
        assert_eq!(body.len(), 256);
        assert!(MultiBatch::decode(&body, 128).is_ok());

        let mut bad = body.clone();
        bad[200] = 0;
        assert_eq!(MultiBatch::decode(&bad, 128).unwrap_err(), MultiBatchError::Padding);

        let mut bad = body.clone();
        bad[254] = 0;
        bad[255] = 0;
        assert_eq!(MultiBatch::decode(&bad, 128).unwrap_err(), MultiBatchError::BatchCount { count: 0 });

        let mut bad = body.clone();
        bad[252] = 2;
        assert!(matches!(MultiBatch::decode(&bad, 128), Err(MultiBatchError::PayloadSize { .. })));

        assert!(matches!(MultiBatch::decode(&body[..200], 128), Err(MultiBatchError::Misaligned { .. })));
        assert!(matches!(MultiBatch::decode(&[], 128), Err(MultiBatchError::TooShort { .. })));
        let mut huge = vec![0xFFu8; 128];
        huge[126] = 0xFF;
        huge[127] = 0xFF;
        assert_eq!(MultiBatch::decode(&huge, 128).unwrap_err(), MultiBatchError::BatchCount { count: 65535 });
    }
}
