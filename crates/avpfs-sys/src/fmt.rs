//! Decimal formatting without allocation, for signal handlers and code that
//! runs after `fork` (async-signal-safe).

/// The most digits a `u64` has in decimal.
pub const U64_DIGITS: usize = 20;

/// Writes `n` in decimal at the end of `buf` and returns the digits (a
/// suffix of `buf`). Allocates nothing and calls nothing: safe in a signal
/// handler.
pub fn decimal(n: u64, buf: &mut [u8; U64_DIGITS]) -> &[u8] {
    let mut n = n;
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_display() {
        for n in [0, 1, 9, 10, 99, 100, 4096, 1_000_000_007, u64::from(u32::MAX), u64::MAX] {
            let mut buf = [0u8; U64_DIGITS];
            assert_eq!(decimal(n, &mut buf), n.to_string().as_bytes(), "{n}");
        }
    }
}
