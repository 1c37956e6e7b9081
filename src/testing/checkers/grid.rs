//! Checker: at the end of a run, every block of every running replica's durable checkpoint is
//! intact on its disk — latent sector errors the run planted in the grid were found by the
//! replica's scrubber and repaired from a peer's copy, byte for byte (its checksum).

use xxhash_rust::xxh3::xxh3_128;

use super::Failure;
use crate::vsr::superblock::BlockReference;

const NAME: &str = "grid intact";

/// Checks that `block`, as read from replica `replica`'s disk at `reference`'s address, is the
/// block its durable checkpoint references.
pub fn check_block(replica: u8, reference: &BlockReference, block: &[u8]) -> Result<(), Failure> {
    if xxh3_128(block) != reference.checksum {
        return Err(Failure::new(
            NAME,
            format!(
                "replica {replica}: block {} of its durable checkpoint is damaged at the end",
                reference.address
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_intact_block_passes_and_a_flipped_one_fires() {
        let mut block = vec![7u8; 4096];
        let reference = BlockReference { checksum: xxh3_128(&block), address: 3, reserved: 0 };
        assert!(check_block(0, &reference, &block).is_ok());
        block[100] ^= 1;
        assert!(check_block(1, &reference, &block).unwrap_err().message.contains("block 3"));
    }
}
