//! The replica's message buffers: a fixed pool, allocated at start, whose buffers are handed
//! out by counted reference. A request received into a pooled message becomes its prepare in
//! place, and the one buffer then feeds the journal's write (and, in a cluster, every send of
//! the prepare): nothing is copied, nothing is allocated while serving.
//!
//! Ownership is explicit. A [`Message`] is one reference; it is not `Clone`: another reference
//! comes from [`MessagePool::reference`], and every reference goes back through
//! [`MessagePool::release`]. The buffer is free again when its last reference is released.
//! Only a message's one owner may write it ([`MessagePool::bytes_mut`]): a buffer that several
//! parts of the replica (or a send in flight) read never changes under them.

use super::header::Header;
use crate::constants::{HEADER_SIZE, SECTOR_SIZE};

/// One reference to a pooled message buffer.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a message reference must be released to its pool"]
pub struct Message {
    index: u32,
}

/// A fixed number of sector-aligned message buffers with reference counts.
pub struct MessagePool {
    /// Every buffer, one after the other.
    memory: Mapping,
    /// The size of every buffer, a multiple of the sector size.
    size: usize,
    /// References held to each buffer (0: free).
    references: Vec<u32>,
    /// The free buffers' indexes, the most recently freed last (reused first: warm in cache).
    free: Vec<u32>,
}

impl std::fmt::Debug for MessagePool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessagePool")
            .field("capacity", &self.capacity())
            .field("available", &self.available())
            .field("message_size", &self.message_size())
            .finish()
    }
}

impl MessagePool {
    /// A pool of `count` zeroed buffers of `message_size` bytes each (rounded up to whole
    /// sectors, for direct I/O). Allocates all of them: make pools once, at start-up.
    pub fn new(count: usize, message_size: usize) -> MessagePool {
        assert!(count > 0 && count <= u32::MAX as usize);
        assert!(message_size >= HEADER_SIZE);
        let size = message_size.next_multiple_of(SECTOR_SIZE);
        MessagePool {
            memory: Mapping::new(count * size),
            size,
            references: vec![0; count],
            free: (0..count as u32).rev().collect(),
        }
    }

    /// How many buffers the pool has.
    pub fn capacity(&self) -> usize {
        self.references.len()
    }

    /// How many buffers are free.
    pub fn available(&self) -> usize {
        self.free.len()
    }

    /// The size of every buffer, a multiple of the sector size.
    pub fn message_size(&self) -> usize {
        self.size
    }

    /// A free buffer with one reference, or `None` if every buffer is in use (the caller
    /// decides: back-pressure, or drop a request that its client will retry). Its bytes are
    /// whatever its last owner left: write before reading.
    pub fn acquire(&mut self) -> Option<Message> {
        let index = self.free.pop()?;
        assert_eq!(self.references[index as usize], 0);
        self.references[index as usize] = 1;
        Some(Message { index })
    }

    /// Another reference to `message`'s buffer (the buffer is read-only while there are two).
    pub fn reference(&mut self, message: &Message) -> Message {
        let references = &mut self.references[message.index as usize];
        assert!(*references > 0, "a reference to a free message");
        *references += 1;
        Message { index: message.index }
    }

    /// Gives `message` back; its buffer is free once no reference is left.
    pub fn release(&mut self, message: Message) {
        let references = &mut self.references[message.index as usize];
        assert!(*references > 0, "a message released twice");
        *references -= 1;
        if *references == 0 {
            assert!(self.free.len() < self.capacity());
            self.free.push(message.index);
        }
    }

    /// The whole buffer of `message` ([`MessagePool::message_size`] bytes).
    pub fn bytes(&self, message: &Message) -> &[u8] {
        assert!(self.references[message.index as usize] > 0);
        let start = message.index as usize * self.size;
        &self.memory.bytes()[start..start + self.size]
    }

    /// The whole buffer of `message`, to write: only its one owner may.
    pub fn bytes_mut(&mut self, message: &Message) -> &mut [u8] {
        assert_eq!(self.references[message.index as usize], 1, "a shared message is read-only");
        let start = message.index as usize * self.size;
        &mut self.memory.bytes_mut()[start..start + self.size]
    }

    /// The header at the start of `message`'s buffer.
    pub fn header(&self, message: &Message) -> Header {
        bytemuck::pod_read_unaligned(&self.bytes(message)[..HEADER_SIZE])
    }
}

/// Zeroed, page-aligned memory mapped straight from the operating system: its pages are zero
/// until first touched, so a pool costs nothing until used (an allocator would zero it all at
/// once, which the simulator's thousands of restarts would pay for each time).
struct Mapping {
    pointer: *mut u8,
    size: usize,
}

// SAFETY: the mapping is owned exclusively, like a `Box<[u8]>`.
unsafe impl Send for Mapping {}
// SAFETY: shared access is read-only through `bytes`.
unsafe impl Sync for Mapping {}

impl Mapping {
    fn new(size: usize) -> Mapping {
        assert!(size > 0 && size.is_multiple_of(SECTOR_SIZE));
        // SAFETY: an anonymous private mapping of `size` bytes at an address the kernel picks.
        let pointer = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if pointer == libc::MAP_FAILED {
            let layout =
                std::alloc::Layout::from_size_align(size, SECTOR_SIZE).expect("sector-aligned layout");
            std::alloc::handle_alloc_error(layout);
        }
        assert!((pointer as usize).is_multiple_of(SECTOR_SIZE), "mappings are page-aligned");
        Mapping { pointer: pointer.cast(), size }
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: `pointer` is valid for `size` bytes (zero until written) for the mapping's life.
        unsafe { std::slice::from_raw_parts(self.pointer, self.size) }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as for `bytes`, and `&mut self` guarantees exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.pointer, self.size) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping was made by `Mapping::new` with this size and is unmapped once.
        let result = unsafe { libc::munmap(self.pointer.cast(), self.size) };
        assert_eq!(result, 0, "munmap of a message pool failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_is_free_again_only_after_its_last_reference_is_released() {
        let mut pool = MessagePool::new(2, 1000);
        assert_eq!(pool.message_size(), SECTOR_SIZE, "rounded up to a sector");
        let first = pool.acquire().expect("free");
        pool.bytes_mut(&first)[0] = 7;
        let second_reference = pool.reference(&first);
        assert_eq!(pool.bytes(&second_reference)[0], 7, "the same buffer");
        let other = pool.acquire().expect("free");
        assert_ne!(other, first);
        assert!(pool.acquire().is_none(), "every buffer in use");
        pool.release(first);
        assert!(pool.acquire().is_none(), "one reference is left");
        pool.release(second_reference);
        assert_eq!(pool.available(), 1);
        let reused = pool.acquire().expect("freed");
        assert_eq!(pool.bytes(&reused)[0], 7, "the most recently freed buffer comes back first");
        pool.release(reused);
        pool.release(other);
        assert_eq!(pool.available(), pool.capacity());
    }

    #[test]
    #[should_panic(expected = "a shared message is read-only")]
    fn a_shared_message_cannot_be_written() {
        let mut pool = MessagePool::new(1, SECTOR_SIZE);
        let message = pool.acquire().expect("free");
        let _reader = pool.reference(&message);
        pool.bytes_mut(&message)[0] = 1;
    }

    #[test]
    #[should_panic(expected = "a message released twice")]
    fn a_message_released_twice_is_a_bug() {
        let mut pool = MessagePool::new(1, SECTOR_SIZE);
        let message = pool.acquire().expect("free");
        let forged = Message { index: message.index };
        pool.release(message);
        pool.release(forged);
    }

    #[test]
    fn buffers_are_sector_aligned_for_direct_io() {
        let mut pool = MessagePool::new(3, 64 * 1024);
        let messages: Vec<Message> = (0..3).map(|_| pool.acquire().expect("free")).collect();
        for message in &messages {
            assert_eq!(pool.bytes(message).as_ptr() as usize % SECTOR_SIZE, 0);
            assert_eq!(pool.bytes(message).len(), 64 * 1024);
        }
        messages.into_iter().for_each(|message| pool.release(message));
    }
}
