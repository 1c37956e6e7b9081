//! A heap buffer aligned to a sector, as direct I/O requires.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::ops::{Deref, DerefMut};

use crate::constants::SECTOR_SIZE;

/// A zero-initialised, sector-aligned byte buffer whose length is a multiple of the sector size.
pub struct AlignedBuffer {
    pointer: *mut u8,
    size: usize,
}

// SAFETY: the buffer owns its memory exclusively, like a `Box<[u8]>`.
unsafe impl Send for AlignedBuffer {}
// SAFETY: shared access is read-only through `Deref`.
unsafe impl Sync for AlignedBuffer {}

impl AlignedBuffer {
    /// A zeroed buffer of `size` bytes; `size` must be a non-zero multiple of the sector size.
    pub fn new(size: usize) -> AlignedBuffer {
        assert!(size > 0 && size.is_multiple_of(SECTOR_SIZE));
        let layout = Self::layout(size);
        // SAFETY: the layout has a non-zero size.
        let pointer = unsafe { alloc_zeroed(layout) };
        if pointer.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        AlignedBuffer { pointer, size }
    }

    fn layout(size: usize) -> Layout {
        Layout::from_size_align(size, SECTOR_SIZE).expect("sector-aligned layout")
    }
}

impl Deref for AlignedBuffer {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: `pointer` is valid for `size` initialised bytes for the buffer's lifetime.
        unsafe { std::slice::from_raw_parts(self.pointer, self.size) }
    }
}

impl DerefMut for AlignedBuffer {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as for `deref`, and `&mut self` guarantees exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.pointer, self.size) }
    }
}

impl Drop for AlignedBuffer {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with exactly this layout.
        unsafe { dealloc(self.pointer, Self::layout(self.size)) };
    }
}

impl std::fmt::Debug for AlignedBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AlignedBuffer({} bytes)", self.size)
    }
}

#[cfg(test)]
mod tests {
    use super::AlignedBuffer;

    #[test]
    fn buffers_are_sector_aligned_and_zeroed() {
        let mut buffer = AlignedBuffer::new(8192);
        assert_eq!(buffer.as_ptr() as usize % 4096, 0);
        assert!(buffer.iter().all(|byte| *byte == 0));
        buffer[8191] = 7;
        assert_eq!(buffer.len(), 8192);
        assert_eq!(buffer[8191], 7);
    }
}
