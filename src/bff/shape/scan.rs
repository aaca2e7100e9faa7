//! A validating JSON scanner that writes what a [`TextNode`] keeps straight into the client's
//! text: kept values are copied as byte ranges, skipped ones are only checked, and nothing is
//! decoded or allocated along the way (a key with escapes is the one thing decoded).
//!
//! It accepts exactly RFC 8259 JSON (as `serde_json` does): no trailing commas, no comments,
//! no control characters in strings, numbers by the grammar, nesting at most 128 deep. What
//! it copies is checked to be UTF-8; skipped strings are not decoded, so they are not.

use super::text::TextNode;

/// Deepest nesting accepted (as `serde_json`'s recursion limit).
const MAX_DEPTH: u32 = 128;

/// Invalid JSON, at this byte offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Invalid(pub usize);

type Result<T> = std::result::Result<T, Invalid>;

/// Writes the shaped answer of `bytes` to `out`; `Ok(false)` when the root has the wrong type.
pub(super) fn write(
    node: &TextNode,
    cap: Option<usize>,
    bytes: &[u8],
    out: &mut Vec<u8>,
) -> Result<bool> {
    let mut s = Scan {
        b: bytes,
        i: 0,
        depth: 0,
    };
    let kept = s.value(node, cap, out)?;
    s.ws();
    if s.i != bytes.len() {
        return Err(Invalid(s.i));
    }
    if !kept {
        out.clear();
    }
    // Keys come from the configuration; everything else was copied from the answer.
    std::str::from_utf8(out).map_err(|e| Invalid(e.valid_up_to()))?;
    Ok(kept)
}

/// Where the members of a root object named in `names` are: (name index, value start, value
/// end), in document order (a duplicated key each time). `None` when the root is not an
/// object. The rest is skipped (and checked) as by [`write`].
pub(super) fn members<N: Named>(
    names: &[N],
    bytes: &[u8],
) -> Result<Option<Vec<(usize, usize, usize)>>> {
    let mut s = Scan {
        b: bytes,
        i: 0,
        depth: 0,
    };
    s.ws();
    if s.peek() != Some(b'{') {
        s.skip()?;
        s.ws();
        return if s.i == bytes.len() {
            Ok(None)
        } else {
            Err(Invalid(s.i))
        };
    }
    let mut found = Vec::new();
    let mut more = s.open(b'}')?;
    while more {
        s.ws();
        let i = s.key_in(names)?;
        s.eat(b':')?;
        s.ws();
        let start = s.i;
        s.skip_value()?;
        if let Some(i) = i {
            found.push((i, start, s.i));
        }
        more = s.next_or_close(b'}')?;
    }
    s.close_level();
    s.ws();
    if s.i != bytes.len() {
        return Err(Invalid(s.i));
    }
    Ok(Some(found))
}

/// Something with a name an object key is matched against.
pub(super) trait Named {
    fn name(&self) -> &str;
}

impl Named for super::text::Child {
    fn name(&self) -> &str {
        &self.name
    }
}

impl<T> Named for (Box<str>, T) {
    fn name(&self) -> &str {
        &self.0
    }
}

struct Scan<'a> {
    b: &'a [u8],
    i: usize,
    depth: u32,
}

/// `a == b` for short keys, without a call to `memcmp` per candidate. (Not
/// `net::bytes::same`: with it, BFF mobile /home measured 0.6% more instructions,
/// `REQUESTS=3000 load-tests/profile-bff --ab BIN`.)
#[inline]
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

impl Scan<'_> {
    #[inline]
    fn ws(&mut self) {
        // Answers are mostly compact: one comparison tells a token from whitespace.
        while let Some(&c) = self.b.get(self.i) {
            if c > b' ' || !matches!(c, b' ' | b'\n' | b'\r' | b'\t') {
                return;
            }
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> Result<()> {
        self.ws();
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(Invalid(self.i))
        }
    }

    /// After a member or element: `true` for a comma (another follows), `false` for `close`.
    fn next_or_close(&mut self, close: u8) -> Result<bool> {
        self.ws();
        match self.peek() {
            Some(b',') => {
                self.i += 1;
                Ok(true)
            }
            Some(c) if c == close => {
                self.i += 1;
                Ok(false)
            }
            _ => Err(Invalid(self.i)),
        }
    }

    /// Opens an object or array (the byte at `i` is `{` or `[`): `false` when it is empty
    /// (its `close` is eaten too). One level deeper until the caller's `close_level`.
    fn open(&mut self, close: u8) -> Result<bool> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(Invalid(self.i));
        }
        self.i += 1;
        self.ws();
        if self.peek() == Some(close) {
            self.i += 1;
            return Ok(false);
        }
        Ok(true)
    }

    fn close_level(&mut self) {
        self.depth -= 1;
    }

    /// One value, shaped by `node`; `false` when it has the wrong type (nothing written).
    fn value(&mut self, node: &TextNode, cap: Option<usize>, out: &mut Vec<u8>) -> Result<bool> {
        self.ws();
        match (node, self.peek()) {
            // Walked rather than copied whole: that drops the whitespace between its tokens
            // (and caps its arrays).
            (TextNode::All, Some(b'{' | b'[')) => self.walk_all(cap, out),
            (TextNode::All, _) => {
                let start = self.i;
                self.skip_value()?;
                out.extend_from_slice(&self.b[start..self.i]);
                Ok(true)
            }
            (TextNode::Object(children), Some(b'{')) => {
                self.object(children, cap, out)?;
                Ok(true)
            }
            (TextNode::Each(inner), Some(b'[')) => {
                self.array(inner, cap, out)?;
                Ok(true)
            }
            _ => {
                self.skip()?;
                Ok(false)
            }
        }
    }

    fn object(
        &mut self,
        children: &[super::text::Child],
        cap: Option<usize>,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        out.push(b'{');
        let mut written: u64 = 0;
        let mut more = self.open(b'}')?;
        while more {
            self.ws();
            let found = self.key_in(children)?;
            self.eat(b':')?;
            match found.filter(|&i| written & (1 << i) == 0) {
                Some(i) => {
                    let mark = out.len();
                    if written != 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(&children[i].key);
                    if self.value(&children[i].node, cap, out)? {
                        written |= 1 << i;
                    } else {
                        out.truncate(mark);
                    }
                }
                None => self.skip_value()?,
            }
            more = self.next_or_close(b'}')?;
        }
        self.close_level();
        out.push(b'}');
        Ok(())
    }

    fn array(&mut self, inner: &TextNode, cap: Option<usize>, out: &mut Vec<u8>) -> Result<()> {
        out.push(b'[');
        let limit = cap.unwrap_or(usize::MAX);
        let (mut seen, mut wrote) = (0usize, false);
        let mut more = self.open(b']')?;
        while more {
            if seen < limit {
                let mark = out.len();
                if wrote {
                    out.push(b',');
                }
                if self.value(inner, cap, out)? {
                    wrote = true;
                } else {
                    out.truncate(mark);
                }
                seen += 1;
            } else {
                self.skip()?;
            }
            more = self.next_or_close(b']')?;
        }
        self.close_level();
        out.push(b']');
        Ok(())
    }

    /// An object or array kept whole, with every array at any depth capped.
    fn walk_all(&mut self, cap: Option<usize>, out: &mut Vec<u8>) -> Result<bool> {
        if self.peek() == Some(b'[') {
            self.array(&TextNode::All, cap, out)?;
            return Ok(true);
        }
        out.push(b'{');
        let mut first = true;
        let mut more = self.open(b'}')?;
        while more {
            self.ws();
            let (start, end, _) = self.string()?;
            if !std::mem::take(&mut first) {
                out.push(b',');
            }
            out.extend_from_slice(&self.b[start - 1..=end]);
            out.push(b':');
            self.eat(b':')?;
            self.value(&TextNode::All, cap, out)?;
            more = self.next_or_close(b'}')?;
        }
        self.close_level();
        out.push(b'}');
        Ok(true)
    }

    /// An object key (the byte at `i` must be its quote): the index of the name it equals.
    #[inline]
    fn key_in<N: Named>(&mut self, names: &[N]) -> Result<Option<usize>> {
        let (start, end, escaped) = self.string()?;
        if escaped {
            return self.escaped_key_in(names, start, end);
        }
        let key = &self.b[start..end];
        Ok(names.iter().position(|n| same(n.name().as_bytes(), key)))
    }

    /// A key with escapes, decoded (rare: kept out of [`Scan::key_in`]).
    #[cold]
    fn escaped_key_in<N: Named>(
        &self,
        names: &[N],
        start: usize,
        end: usize,
    ) -> Result<Option<usize>> {
        let key: String =
            serde_json::from_slice(&self.b[start - 1..=end]).map_err(|_| Invalid(start))?;
        Ok(names.iter().position(|n| n.name() == key))
    }

    /// Checks one value and moves past it: a string or a number right here, where it is
    /// called (most skipped values are one, and a call each cost more than checking it),
    /// anything else in [`Scan::skip`].
    #[inline(always)]
    fn skip_value(&mut self) -> Result<()> {
        self.ws();
        match self.peek() {
            Some(b'"') => self.string().map(|_| ()),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => self.skip(),
        }
    }

    /// Checks one value and moves past it.
    fn skip(&mut self) -> Result<()> {
        self.ws();
        match self.peek() {
            Some(b'"') => self.string().map(|_| ()),
            Some(b'{') => {
                let mut more = self.open(b'}')?;
                while more {
                    self.ws();
                    self.string()?;
                    self.eat(b':')?;
                    self.skip_value()?;
                    more = self.next_or_close(b'}')?;
                }
                self.close_level();
                Ok(())
            }
            Some(b'[') => {
                let mut more = self.open(b']')?;
                while more {
                    self.skip_value()?;
                    more = self.next_or_close(b']')?;
                }
                self.close_level();
                Ok(())
            }
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(Invalid(self.i)),
        }
    }

    fn literal(&mut self, word: &[u8]) -> Result<()> {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(())
        } else {
            Err(Invalid(self.i))
        }
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
    fn number(&mut self) -> Result<()> {
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(Invalid(self.i)),
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            self.some_digits()?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            self.some_digits()?;
        }
        Ok(())
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
    }

    fn some_digits(&mut self) -> Result<()> {
        let start = self.i;
        self.digits();
        if self.i == start {
            return Err(Invalid(self.i));
        }
        Ok(())
    }

    /// A string (the byte at `i` must be its opening quote): the range of its contents and
    /// whether it has escapes. Control characters and bad escapes are errors.
    #[inline]
    fn string(&mut self) -> Result<(usize, usize, bool)> {
        if self.peek() != Some(b'"') {
            return Err(Invalid(self.i));
        }
        self.i += 1;
        let start = self.i;
        self.skip_plain();
        if self.peek() == Some(b'"') {
            let end = self.i;
            self.i += 1;
            return Ok((start, end, false));
        }
        self.string_rest(start)
    }

    /// The rest of a string at an escape, a control character or the end of the input (rare,
    /// so kept out of [`Scan::string`], which is inlined where it is called).
    #[cold]
    #[inline(never)]
    fn string_rest(&mut self, start: usize) -> Result<(usize, usize, bool)> {
        loop {
            match self.peek() {
                Some(b'"') => {
                    let end = self.i;
                    self.i += 1;
                    return Ok((start, end, true));
                }
                Some(b'\\') => self.escape()?,
                // A control character, or the end of the input.
                _ => return Err(Invalid(self.i)),
            }
            self.skip_plain();
        }
    }

    /// Moves `i` to the next `"`, `\\` or control character (or the end), eight bytes a step.
    /// (`memchr` for long strings measured 2% more instructions per BFF request: most
    /// strings in answers are short.)
    #[inline]
    fn skip_plain(&mut self) {
        const ONES: u64 = 0x0101_0101_0101_0101;
        const HIGH: u64 = 0x8080_8080_8080_8080;
        while let Some(chunk) = self.b.get(self.i..self.i + 8) {
            let v = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
            // Per byte, the top bit of `x - 1` is set for x == 0 (and of `v - 0x20` for
            // v < 0x20) as long as x (and v) is below 0x80, which `!v` checks for all three:
            // `"` and `\\` have that bit clear, so `v ^ c` keeps v's. Borrows only run upward,
            // so the lowest hit is exact.
            let hits = ((v ^ (ONES * u64::from(b'"'))).wrapping_sub(ONES)
                | (v ^ (ONES * u64::from(b'\\'))).wrapping_sub(ONES)
                | v.wrapping_sub(ONES * 0x20))
                & !v
                & HIGH;
            if hits != 0 {
                self.i += (hits.trailing_zeros() / 8) as usize;
                return;
            }
            self.i += 8;
        }
        while let Some(&c) = self.b.get(self.i) {
            if c == b'"' || c == b'\\' || c < 0x20 {
                return;
            }
            self.i += 1;
        }
    }

    /// One escape (the byte at `i` is its backslash).
    fn escape(&mut self) -> Result<()> {
        self.i += 1;
        match self.peek() {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                self.i += 1;
                Ok(())
            }
            Some(b'u') => {
                let hex = self.b.get(self.i + 1..self.i + 5).ok_or(Invalid(self.i))?;
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return Err(Invalid(self.i));
                }
                self.i += 5;
                Ok(())
            }
            _ => Err(Invalid(self.i)),
        }
    }
}

#[cfg(test)]
mod tests;
