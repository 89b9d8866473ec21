//! Decoding of a request's argument bytes: fixed structs, NUL-terminated
//! names, and the request extensions. Nothing here panics on short or
//! malformed input: every failure is an errno for the reply.

use std::ffi::CStr;

use zerocopy::{FromBytes, Immutable, KnownLayout};

/// Longest file name a request may carry (NAME_MAX).
pub const NAME_MAX: usize = 255;
/// Longest symlink target or path argument (PATH_MAX - 1).
pub const PATH_MAX: usize = 4095;
/// Longest extended attribute name (XATTR_NAME_MAX).
pub const XATTR_NAME_MAX: usize = 255;
/// Largest extended attribute value (XATTR_SIZE_MAX).
pub const XATTR_SIZE_MAX: usize = 65536;

/// A cursor over the argument bytes of one request.
#[derive(Debug)]
pub struct Args<'a> {
    buf: &'a [u8],
}

impl<'a> Args<'a> {
    /// Decodes from `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Args { buf }
    }

    /// Bytes not yet decoded.
    pub fn rest(&self) -> &'a [u8] {
        self.buf
    }

    /// Decodes a fixed-size struct; `EINVAL` when the request is too short.
    pub fn fetch<T: FromBytes + KnownLayout + Immutable>(&mut self) -> Result<T, i32> {
        let (value, rest) = T::read_from_prefix(self.buf).map_err(|_| libc::EINVAL)?;
        self.buf = rest;
        Ok(value)
    }

    /// Decodes the first `n` bytes of a struct that older protocol versions
    /// send shorter; the missing tail reads as zero.
    pub fn fetch_prefix<T: FromBytes + KnownLayout + Immutable + zerocopy::IntoBytes>(
        &mut self,
        n: usize,
    ) -> Result<T, i32> {
        let size = core::mem::size_of::<T>();
        let take = n.min(size);
        if self.buf.len() < take {
            return Err(libc::EINVAL);
        }
        let mut value = T::new_zeroed();
        value.as_mut_bytes()[..take].copy_from_slice(&self.buf[..take]);
        self.buf = &self.buf[take..];
        Ok(value)
    }

    /// Takes `n` raw bytes; `EINVAL` when fewer remain.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], i32> {
        if self.buf.len() < n {
            return Err(libc::EINVAL);
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    /// Decodes a NUL-terminated string of at most `max` bytes (without the NUL).
    /// `EINVAL` without a NUL, `ENAMETOOLONG` when longer than `max`.
    pub fn cstr(&mut self, max: usize) -> Result<&'a CStr, i32> {
        let nul = self.buf.iter().position(|&b| b == 0).ok_or(libc::EINVAL)?;
        if nul > max {
            return Err(libc::ENAMETOOLONG);
        }
        let s = CStr::from_bytes_with_nul(&self.buf[..=nul]).map_err(|_| libc::EINVAL)?;
        self.buf = &self.buf[nul + 1..];
        Ok(s)
    }

    /// Decodes a directory entry name: non-empty, at most NAME_MAX bytes, no
    /// `/`, not `.` or `..`.
    pub fn name(&mut self) -> Result<&'a CStr, i32> {
        let s = self.cstr(NAME_MAX)?;
        check_name(s.to_bytes())?;
        Ok(s)
    }
}

/// Checks that `name` is one path component that cannot leave its directory.
pub fn check_name(name: &[u8]) -> Result<(), i32> {
    if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') {
        return Err(libc::EINVAL);
    }
    Ok(())
}

/// Extracts the supplementary groups from a request's extension area.
/// Unknown extension types are skipped; a malformed area is `EINVAL`.
pub fn parse_extensions(mut ext: &[u8]) -> Result<Option<Vec<u32>>, i32> {
    let mut groups = None;
    while !ext.is_empty() {
        let (hdr, _) = fuse_abi::ExtHeader::read_from_prefix(ext).map_err(|_| libc::EINVAL)?;
        let size = hdr.size as usize;
        if size < core::mem::size_of::<fuse_abi::ExtHeader>() || size > ext.len() || !size.is_multiple_of(8) {
            return Err(libc::EINVAL);
        }
        let body = &ext[core::mem::size_of::<fuse_abi::ExtHeader>()..size];
        if hdr.typ == fuse_abi::FUSE_EXT_GROUPS {
            let mut a = Args::new(body);
            let sg: fuse_abi::SuppGroups = a.fetch()?;
            let n = sg.nr_groups as usize;
            let raw = a.bytes(n.checked_mul(4).ok_or(libc::EINVAL)?)?;
            groups = Some(raw.chunks_exact(4).map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]])).collect());
        }
        ext = &ext[size..];
    }
    Ok(groups)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fuse_abi::{MkdirIn, Rename2In};

    #[test]
    fn names_are_validated() {
        assert_eq!(Args::new(b"a\0").name().unwrap().to_bytes(), b"a");
        assert_eq!(Args::new(b"abc").name().unwrap_err(), libc::EINVAL);
        assert_eq!(Args::new(b"\0").name().unwrap_err(), libc::EINVAL);
        assert_eq!(Args::new(b".\0").name().unwrap_err(), libc::EINVAL);
        assert_eq!(Args::new(b"..\0").name().unwrap_err(), libc::EINVAL);
        assert_eq!(Args::new(b"a/b\0").name().unwrap_err(), libc::EINVAL);
        assert_eq!(Args::new(b"...\0").name().unwrap().to_bytes(), b"...");
        let long = [b"x".repeat(256), vec![0]].concat();
        assert_eq!(Args::new(&long).name().unwrap_err(), libc::ENAMETOOLONG);
        let max = [b"x".repeat(255), vec![0]].concat();
        assert!(Args::new(&max).name().is_ok());
    }

    #[test]
    fn two_names_after_a_struct() {
        #[rustfmt::skip]
        let bytes = [
            9, 0, 0, 0, 0, 0, 0, 0, // newdir = 9
            1, 0, 0, 0,             // flags = RENAME_NOREPLACE
            0, 0, 0, 0,             // padding
            b'o', b'l', b'd', 0,
            b'n', b'e', b'w', 0,
        ];
        let mut a = Args::new(&bytes);
        let r: Rename2In = a.fetch().unwrap();
        assert_eq!((r.newdir, r.flags), (9, 1));
        assert_eq!(a.name().unwrap().to_bytes(), b"old");
        assert_eq!(a.name().unwrap().to_bytes(), b"new");
        assert!(a.rest().is_empty());
    }

    #[test]
    fn short_struct_is_einval() {
        let mut a = Args::new(&[0u8; 7]);
        assert_eq!(a.fetch::<MkdirIn>().unwrap_err(), libc::EINVAL);
        assert_eq!(a.rest().len(), 7);
    }

    #[test]
    fn fetch_prefix_zero_fills() {
        let mut a = Args::new(&[1, 0, 0, 0, 2, 0, 0, 0]);
        let s: fuse_abi::SetxattrIn = a.fetch_prefix(8).unwrap();
        assert_eq!((s.size, s.flags, s.setxattr_flags), (1, 2, 0));
    }

    #[test]
    fn group_extension_decodes() {
        #[rustfmt::skip]
        let ext = [
            24, 0, 0, 0, 32, 0, 0, 0, // size 24, FUSE_EXT_GROUPS
            2, 0, 0, 0,               // two groups
            10, 0, 0, 0, 20, 0, 0, 0,
            0, 0, 0, 0,               // padding
        ];
        assert_eq!(parse_extensions(&ext).unwrap(), Some(vec![10, 20]));
        assert_eq!(parse_extensions(&ext[..16]).unwrap_err(), libc::EINVAL);
        assert_eq!(parse_extensions(&[]).unwrap(), None);
        // A zero-size header would loop forever if accepted.
        assert_eq!(parse_extensions(&[0; 8]).unwrap_err(), libc::EINVAL);
        // An unknown type is skipped.
        assert_eq!(parse_extensions(&[8, 0, 0, 0, 99, 0, 0, 0]).unwrap(), None);
        // A group count larger than the extension.
        let mut bad = ext;
        bad[8] = 200;
        assert_eq!(parse_extensions(&bad).unwrap_err(), libc::EINVAL);
    }
}
