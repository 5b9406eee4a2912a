//! Checked cursor over untrusted bytes: every read is bounds-checked and fails with
//! [`DecodeError::Truncated`] instead of panicking.

use super::DecodeError;

/// A forward-only, bounds-checked view over a byte slice (network byte order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Start reading at the beginning of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    /// Number of bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// Whether every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The next `n` bytes.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.buf.len() {
            return Err(DecodeError::Truncated);
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    /// The next `N` bytes as an array.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.bytes(N)?);
        Ok(a)
    }

    /// Everything not yet read.
    pub fn rest(&mut self) -> &'a [u8] {
        core::mem::take(&mut self.buf)
    }

    /// One octet.
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(u8::from_be_bytes(self.array()?))
    }

    /// A big-endian 16-bit integer.
    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    /// A big-endian 32-bit integer.
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    /// A big-endian 64-bit integer.
    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// A nested structure whose length was given by a length field: a length pointing past
    /// the enclosing structure is [`DecodeError::BadLength`], not truncation.
    pub fn sub(&mut self, n: usize) -> Result<Reader<'a>, DecodeError> {
        self.bytes(n)
            .map(Reader::new)
            .map_err(|_| DecodeError::BadLength)
    }

    /// Succeeds only if every byte was consumed.
    pub fn finish(&self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_checked() {
        let mut r = Reader::new(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14]);
        assert_eq!(r.u8(), Ok(1));
        assert_eq!(r.u16(), Ok(0x0203));
        assert_eq!(r.u32(), Ok(0x0405_0607));
        assert_eq!(r.remaining(), 7);
        assert_eq!(r.finish(), Err(DecodeError::TrailingBytes));
        assert_eq!(r.u64(), Err(DecodeError::Truncated));
        assert_eq!(r.sub(8), Err(DecodeError::BadLength));
        assert_eq!(r.bytes(2), Ok(&[8u8, 9][..]));
        assert_eq!(r.rest(), &[10, 11, 12, 13, 14]);
        assert!(r.is_empty());
        assert_eq!(r.finish(), Ok(()));
        assert_eq!(r.u8(), Err(DecodeError::Truncated));
    }
}
