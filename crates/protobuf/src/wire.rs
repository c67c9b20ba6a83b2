//! The protobuf wire format: varints, keys, length-delimited records. Nothing here knows any
//! message; every read is bounds-checked and returns an error instead of panicking.

use crate::Error;

/// The wire type of a field, the low three bits of its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WireType {
    Varint,
    Fixed64,
    Len,
    Fixed32,
}

impl WireType {
    fn bits(self) -> u64 {
        match self {
            WireType::Varint => 0,
            WireType::Fixed64 => 1,
            WireType::Len => 2,
            WireType::Fixed32 => 5,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            WireType::Varint => "varint",
            WireType::Fixed64 => "fixed64",
            WireType::Len => "length-delimited",
            WireType::Fixed32 => "fixed32",
        }
    }
}

/// A cursor over one message's bytes.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub(crate) fn varint(&mut self) -> Result<u64, Error> {
        let mut value: u64 = 0;
        for i in 0..10 {
            let Some(&byte) = self.buf.get(self.pos) else {
                return Err(Error::malformed("truncated varint"));
            };
            self.pos += 1;
            if i == 9 && byte > 1 {
                return Err(Error::malformed("varint longer than 64 bits"));
            }
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte < 0x80 {
                return Ok(value);
            }
        }
        Err(Error::malformed("varint longer than 10 bytes"))
    }

    /// The next field's number and wire type, or `None` at the end of the message.
    pub(crate) fn key(&mut self) -> Result<Option<(u32, WireType)>, Error> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let wire = match key & 7 {
            0 => WireType::Varint,
            1 => WireType::Fixed64,
            2 => WireType::Len,
            5 => WireType::Fixed32,
            3 | 4 => return Err(Error::malformed("protobuf groups are not supported")),
            other => return Err(Error::malformed(format!("invalid wire type {other}"))),
        };
        let tag = key >> 3;
        if tag == 0 || tag > u64::from(u32::MAX >> 3) {
            return Err(Error::malformed(format!("invalid field number {tag}")));
        }
        Ok(Some((tag as u32, wire)))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.buf.len())
            .ok_or_else(|| {
                Error::malformed(format!(
                    "length {n} runs past the end of the data ({} bytes left)",
                    self.buf.len() - self.pos
                ))
            })?;
        let bytes = &self.buf[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    /// The payload of a length-delimited record.
    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], Error> {
        let len = self.varint()?;
        let len = usize::try_from(len).map_err(|_| Error::malformed("length overflows"))?;
        self.take(len)
    }

    pub(crate) fn fixed64(&mut self) -> Result<u64, Error> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    fn fixed32(&mut self) -> Result<u32, Error> {
        let b = self.take(4)?;
        let mut a = [0u8; 4];
        a.copy_from_slice(b);
        Ok(u32::from_le_bytes(a))
    }

    /// Skips the value of a field this decoder does not know.
    pub(crate) fn skip(&mut self, wire: WireType) -> Result<(), Error> {
        match wire {
            WireType::Varint => self.varint().map(drop),
            WireType::Fixed64 => self.fixed64().map(drop),
            WireType::Len => self.bytes().map(drop),
            WireType::Fixed32 => self.fixed32().map(drop),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }
}

/// Checks that a field arrived with the wire type its schema says.
pub(crate) fn expect(wire: WireType, want: WireType) -> Result<(), Error> {
    if wire == want {
        Ok(())
    } else {
        Err(Error::malformed(format!(
            "wrong wire type: got {}, want {}",
            wire.name(),
            want.name()
        )))
    }
}

pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(crate) fn put_key(out: &mut Vec<u8>, tag: u32, wire: WireType) {
    put_varint(out, (u64::from(tag) << 3) | wire.bits());
}

pub(crate) fn put_bytes(out: &mut Vec<u8>, tag: u32, bytes: &[u8]) {
    put_key(out, tag, WireType::Len);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

pub(crate) fn put_uint(out: &mut Vec<u8>, tag: u32, v: u64) {
    put_key(out, tag, WireType::Varint);
    put_varint(out, v);
}

/// Writes `tag` and a length-delimited record whose body `body` appends to `out`; the length
/// prefix is inserted once the body is written. Returns the body's length.
pub(crate) fn put_nested<E>(
    out: &mut Vec<u8>,
    tag: u32,
    body: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
) -> Result<usize, E> {
    put_key(out, tag, WireType::Len);
    let start = out.len();
    body(out)?;
    let len = out.len() - start;
    let mut prefix = Vec::with_capacity(5);
    put_varint(&mut prefix, len as u64);
    out.splice(start..start, prefix);
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip() {
        for v in [
            0u64,
            1,
            127,
            128,
            300,
            u64::from(u32::MAX),
            u64::MAX,
            (-1i64) as u64,
        ] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            let mut r = Reader::new(&out);
            assert_eq!(r.varint().ok(), Some(v));
            assert!(r.is_empty());
        }
    }

    #[test]
    fn bad_varints_are_errors() {
        assert!(Reader::new(&[0x80]).varint().is_err());
        assert!(Reader::new(&[0xff; 11]).varint().is_err());
        assert!(
            Reader::new(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02])
                .varint()
                .is_err()
        );
    }

    #[test]
    fn lengths_past_the_end_are_errors() {
        assert!(Reader::new(&[0x05, 1, 2]).bytes().is_err());
        assert!(
            Reader::new(&[0xff, 0xff, 0xff, 0xff, 0x0f])
                .bytes()
                .is_err()
        );
        assert!(Reader::new(&[1, 2, 3]).fixed64().is_err());
    }

    #[test]
    fn keys_reject_groups_and_field_zero() {
        assert!(Reader::new(&[0x0b]).key().is_err());
        assert!(Reader::new(&[0x02]).key().is_err());
        assert!(Reader::new(&[0x0f]).key().is_err());
        assert_eq!(
            Reader::new(&[0x12]).key().ok(),
            Some(Some((2, WireType::Len)))
        );
    }

    #[test]
    fn nested_records_get_their_length_prefix() {
        let mut out = Vec::new();
        let r: Result<usize, ()> = put_nested(&mut out, 1, |o| {
            o.extend_from_slice(&[0u8; 200]);
            Ok(())
        });
        assert_eq!(r, Ok(200));
        assert_eq!(&out[..3], &[0x0a, 0xc8, 0x01]);
        assert_eq!(out.len(), 203);
    }
}
