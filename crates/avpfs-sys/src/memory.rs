//! Handing freed heap memory back to the kernel.

/// Returns the allocator's free memory to the kernel (glibc `malloc_trim`),
/// so that the resident size falls after many nodes were forgotten. Returns
/// whether some memory was released. A no-op on other C libraries.
pub fn release_free_heap() -> bool {
    #[cfg(target_env = "gnu")]
    {
        // SAFETY: malloc_trim takes a plain integer and only walks the
        // allocator's own free lists, under its own locks.
        unsafe { libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(target_env = "gnu"))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freed_blocks_go_back_to_the_kernel() {
        // Many small blocks, freed, leave pages in the allocator that only a
        // trim returns (an answer of "nothing released" would mean they
        // were returned already; both are fine, a crash is not).
        let blocks: Vec<Vec<u8>> = (0..20_000).map(|i| vec![i as u8; 200]).collect();
        drop(blocks);
        let _ = release_free_heap();
    }
}
