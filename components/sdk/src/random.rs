//! Random bytes from the host (`wasi:random`; the OS natively).

use crate::Error;

/// `N` random bytes. [`Error::Unavailable`] when the source of randomness
/// fails (it should not).
pub fn bytes<const N: usize>() -> Result<[u8; N], Error> {
    let mut buffer = [0_u8; N];
    getrandom::fill(&mut buffer)
        .map_err(|err| Error::Unavailable(format!("no randomness available: {err}")))?;
    Ok(buffer)
}

/// One of `items`, picked by `byte` (`byte % len`): unbiased when `len`
/// divides 256, nearly so for short lists. `None` when `items` is empty.
pub fn pick<T>(items: &[T], byte: u8) -> Option<&T> {
    if items.is_empty() {
        None
    } else {
        items.get(usize::from(byte) % items.len())
    }
}

/// An index below `len` from eight random bytes (`u64 % len`); `None` when
/// `len` is 0.
pub fn index(len: u64, random: [u8; 8]) -> Option<u64> {
    u64::from_le_bytes(random).checked_rem(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_vary() {
        let a: [u8; 16] = bytes().expect("random");
        let b: [u8; 16] = bytes().expect("random");
        assert_ne!(a, b);
    }

    #[test]
    fn picks() {
        let items = ["a", "b", "c", "d"];
        assert_eq!(pick(&items, 0), Some(&"a"));
        assert_eq!(pick(&items, 3), Some(&"d"));
        assert_eq!(pick(&items, 4), Some(&"a"));
        assert_eq!(pick(&items, 255), Some(&"d"));
        assert_eq!(pick::<&str>(&[], 7), None);
    }

    #[test]
    fn indexes() {
        assert_eq!(index(0, [9; 8]), None);
        assert_eq!(index(1, [255; 8]), Some(0));
        assert_eq!(index(10, 12_u64.to_le_bytes()), Some(2));
        assert_eq!(index(u64::MAX, u64::MAX.to_le_bytes()), Some(0));
    }
}
