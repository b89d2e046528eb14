//! The personal-data scanner: e-mail addresses, phone numbers, payment cards (Luhn),
//! IBANs (mod 97), US social security numbers, UK national insurance numbers and public IP
//! addresses. Hand-written, one pass over the text's word starts: these formats have no
//! keyword to prefilter on, and a regex over every digit would cost more than the whole
//! secret scanner. Conservative by design: a checksum or a strict shape must hold.

use std::net::{Ipv4Addr, Ipv6Addr};

use pai_types::DataClass;

use super::Finding;

/// Appends every personal value found in `text` (sorted, non-overlapping among themselves).
pub(crate) fn scan(text: &str, out: &mut Vec<Finding>) {
    emails(text, out);
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        // Most bytes (lower-case letters past `f`, spaces, punctuation) start nothing.
        if !STARTS[usize::from(c)] {
            i += 1;
            continue;
        }
        // Only word starts: a value glued to a letter or digit before it is part of
        // something else (a hash, an identifier, a longer number).
        if i > 0
            && (b[i - 1].is_ascii_alphanumeric()
                || matches!(
                    b[i - 1],
                    b'.' | b'_' | b'-' | b'/' | b'+' | b'@' | b'%' | b'#' | b'=' | b'\\'
                ))
        {
            i += 1;
            continue;
        }
        let found = match c {
            b'0'..=b'9' => ipv4(b, i)
                .or_else(|| ssn(b, i))
                .or_else(|| card(b, i))
                .or_else(|| phone_national(b, i))
                .or_else(|| ipv6(b, i)),
            b'+' => phone_e164(b, i),
            b'(' => phone_nanp(b, i),
            b'A'..=b'Z' => iban(b, i).or_else(|| nino(b, i)).or_else(|| ipv6(b, i)),
            b'a'..=b'f' | b':' => ipv6(b, i),
            _ => None,
        };
        match found {
            Some((end, kind, rule)) => {
                out.push(Finding {
                    kind,
                    rule,
                    class: DataClass::Personal,
                    start: i,
                    end,
                });
                i = end;
            }
            None => i += 1,
        }
    }
}

/// Bytes that can start a value: digits, `+`, `(`, `:`, upper-case letters and `a`–`f`.
const STARTS: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = b.is_ascii_digit()
            || b.is_ascii_uppercase()
            || matches!(b, b'+' | b'(' | b':' | b'a'..=b'f');
        c += 1;
    }
    t
};

type Hit = (usize, &'static str, &'static str);

fn digits_at(b: &[u8], i: usize, n: usize) -> bool {
    i + n <= b.len() && b[i..i + n].iter().all(u8::is_ascii_digit)
}

/// Nothing word-like follows `end`: not a letter, digit or underscore, and not a separator
/// followed by a digit (a longer number).
fn ends_clean(b: &[u8], end: usize) -> bool {
    match b.get(end) {
        None => true,
        Some(c) if c.is_ascii_alphanumeric() || *c == b'_' => false,
        Some(b'.' | b'-' | b'/' | b',') => !b.get(end + 1).is_some_and(u8::is_ascii_digit),
        Some(_) => true,
    }
}

fn number(b: &[u8]) -> u32 {
    b.iter().fold(0, |n, d| n * 10 + u32::from(d - b'0'))
}

// ------------------------------------------------------------------------------ e-mail

fn emails(text: &str, out: &mut Vec<Finding>) {
    let b = text.as_bytes();
    let mut after = 0;
    for at in memchr::memchr_iter(b'@', b) {
        if at < after {
            continue;
        }
        let local =
            |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'%' | b'+' | b'-');
        let mut s = at;
        while s > 0 && at - s < 64 && local(b[s - 1]) {
            s -= 1;
        }
        while s < at && b[s] == b'.' {
            s += 1;
        }
        let mut e = at + 1;
        while e < b.len()
            && e - at < 254
            && (b[e].is_ascii_alphanumeric() || matches!(b[e], b'.' | b'-'))
        {
            e += 1;
        }
        while e > at + 1 && matches!(b[e - 1], b'.' | b'-') {
            e -= 1;
        }
        if s == at || e <= at + 1 {
            continue;
        }
        // user:password@host and scheme://user@host are URL parts, not addresses.
        if s > 0 && matches!(b[s - 1], b':' | b'/') {
            continue;
        }
        let (Ok(local_part), Ok(domain)) = (
            std::str::from_utf8(&b[s..at]),
            std::str::from_utf8(&b[at + 1..e]),
        ) else {
            continue;
        };
        if !valid_domain(domain) || placeholder_email(local_part, domain) {
            continue;
        }
        out.push(Finding {
            kind: "EMAIL",
            rule: "email",
            class: DataClass::Personal,
            start: s,
            end: e,
        });
        after = e;
    }
}

fn valid_domain(domain: &str) -> bool {
    let mut labels = domain.split('.');
    let Some(tld) = domain.rsplit('.').next() else {
        return false;
    };
    domain.contains('.')
        && labels.all(|l| !l.is_empty() && !l.starts_with('-') && !l.ends_with('-'))
        && tld.len() >= 2
        && tld.bytes().all(|c| c.is_ascii_alphabetic())
}

fn placeholder_email(local: &str, domain: &str) -> bool {
    let domain = domain.to_ascii_lowercase();
    let tld = domain.rsplit('.').next().unwrap_or("");
    // `icon@2x.png`, `pkg@npm.js`: file names, not addresses.
    const FILES: [&str; 20] = [
        "png", "jpg", "jpeg", "gif", "svg", "webp", "ico", "css", "js", "ts", "rs", "py", "md",
        "txt", "json", "toml", "yaml", "yml", "html", "lock",
    ];
    FILES.contains(&tld)
        || ["test", "invalid", "localhost", "local", "example"].contains(&tld)
        || domain.contains("example")
        || local.to_ascii_lowercase().contains("example")
        || local == "git"
}

// ------------------------------------------------------------------------------ IP addresses

fn ipv4(b: &[u8], i: usize) -> Option<Hit> {
    let mut p = i;
    let mut octets = [0u8; 4];
    for (n, o) in octets.iter_mut().enumerate() {
        let s = p;
        while p < b.len() && p - s < 3 && b[p].is_ascii_digit() {
            p += 1;
        }
        if p == s || (p - s > 1 && b[s] == b'0') {
            return None;
        }
        *o = u8::try_from(number(&b[s..p])).ok()?;
        if n < 3 {
            if b.get(p) != Some(&b'.') {
                return None;
            }
            p += 1;
        }
    }
    if !ends_clean(b, p)
        || b.get(p) == Some(&b'.') && b.get(p + 1).is_some_and(u8::is_ascii_alphanumeric)
    {
        return None;
    }
    let ip = Ipv4Addr::from(octets);
    let [a, b2, c, _] = octets;
    let documentation =
        (a, b2, c) == (192, 0, 2) || (a, b2, c) == (198, 51, 100) || (a, b2, c) == (203, 0, 113);
    // Only addresses that can point at someone: public ones.
    if ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || documentation
        || a == 0
        || a >= 240
        || (a == 100 && (64..128).contains(&b2))
    {
        return None;
    }
    Some((p, "IP", "ipv4"))
}

fn ipv6(b: &[u8], i: usize) -> Option<Hit> {
    let mut e = i;
    while e < b.len() && e - i < 45 && (b[e].is_ascii_hexdigit() || b[e] == b':' || b[e] == b'.') {
        e += 1;
    }
    while e > i && b[e - 1] == b'.' {
        e -= 1;
    }
    let s = std::str::from_utf8(&b[i..e]).ok()?;
    if s.matches(':').count() < 2
        || s.split(':').filter(|g| !g.is_empty()).count() < 3
        || !ends_clean(b, e)
        || b.get(e) == Some(&b':')
    {
        return None;
    }
    let ip: Ipv6Addr = s.parse().ok()?;
    let first = ip.segments()[0];
    let special = ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || first & 0xffc0 == 0xfe80
        || first & 0xfe00 == 0xfc00
        || (first == 0x2001 && ip.segments()[1] == 0x0db8)
        || ip
            .to_ipv4_mapped()
            .is_some_and(|v4| ipv4(v4.to_string().as_bytes(), 0).is_none());
    if special {
        return None;
    }
    Some((e, "IP", "ipv6"))
}

// ------------------------------------------------------------------------------ numbers

/// US social security number, `AAA-GG-SSSS`, in the ranges the SSA issues.
fn ssn(b: &[u8], i: usize) -> Option<Hit> {
    if !(digits_at(b, i, 3)
        && b.get(i + 3) == Some(&b'-')
        && digits_at(b, i + 4, 2)
        && b.get(i + 6) == Some(&b'-')
        && digits_at(b, i + 7, 4))
    {
        return None;
    }
    let end = i + 11;
    if !ends_clean(b, end) {
        return None;
    }
    let (area, group, serial) = (
        number(&b[i..i + 3]),
        number(&b[i + 4..i + 6]),
        number(&b[i + 7..i + 11]),
    );
    let famous = matches!(
        (area, group, serial),
        (78, 5, 1120) | (219, 9, 9999) | (123, 45, 6789)
    );
    if area == 0 || area == 666 || area >= 900 || group == 0 || serial == 0 || famous {
        return None;
    }
    Some((end, "SSN", "us-ssn"))
}

/// 13–19 digits, in groups separated by one space or dash, Luhn-valid, with a card
/// network's prefix and length.
fn card(b: &[u8], i: usize) -> Option<Hit> {
    let mut digits = Vec::with_capacity(19);
    let mut p = i;
    let mut sep: Option<u8> = None;
    let mut end = i;
    while p < b.len() && digits.len() < 20 {
        let c = b[p];
        if c.is_ascii_digit() {
            digits.push(c - b'0');
            p += 1;
            end = p;
        } else if (c == b' ' || c == b'-')
            && sep.is_none_or(|s| s == c)
            && b.get(p + 1).is_some_and(u8::is_ascii_digit)
            && end == p
        {
            sep = Some(c);
            p += 1;
        } else {
            break;
        }
    }
    if !(13..=19).contains(&digits.len())
        || !ends_clean(b, end)
        || !luhn(&digits)
        || !card_network(&digits)
    {
        return None;
    }
    Some((end, "CARD", "payment-card"))
}

pub(crate) fn luhn(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(n, &d)| {
            let d = u32::from(d);
            if !n.is_multiple_of(2) {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

fn card_network(d: &[u8]) -> bool {
    let prefix = |n: usize| d[..n].iter().fold(0u32, |a, &x| a * 10 + u32::from(x));
    let len = d.len();
    let (p2, p3, p4) = (prefix(2), prefix(3), prefix(4));
    (d[0] == 4 && matches!(len, 13 | 16 | 19)) // Visa
        || ((51..=55).contains(&p2) || (2221..=2720).contains(&p4)) && len == 16 // Mastercard
        || matches!(p2, 34 | 37) && len == 15 // American Express
        || (p4 == 6011 || p2 == 65 || (644..=649).contains(&p3)) && (16..=19).contains(&len) // Discover
        || (3528..=3589).contains(&p4) && (16..=19).contains(&len) // JCB
        || ((300..=305).contains(&p3) || matches!(p2, 36 | 38 | 39)) && (14..=19).contains(&len) // Diners
        || p2 == 62 && (16..=19).contains(&len) // UnionPay
}

// ------------------------------------------------------------------------------ phones

/// `+` country code and number: 8–15 digits, single spaces, dashes, dots or an area code in
/// parentheses between them.
fn phone_e164(b: &[u8], i: usize) -> Option<Hit> {
    if !b.get(i + 1).is_some_and(|c| (b'1'..=b'9').contains(c)) {
        return None;
    }
    let mut p = i + 1;
    let mut n = 0;
    let mut end = p;
    while p < b.len() && n <= 15 {
        let c = b[p];
        if c.is_ascii_digit() {
            n += 1;
            p += 1;
            end = p;
        } else if is_phone_sep(c) {
            // At most two separators in a row (`) ` or ` (`), then a digit.
            let mut q = p + 1;
            if b.get(q).is_some_and(|&d| is_phone_sep(d)) {
                q += 1;
            }
            if !b.get(q).is_some_and(u8::is_ascii_digit) {
                break;
            }
            p = q;
        } else {
            break;
        }
    }
    if !(8..=15).contains(&n) || !ends_clean(b, end) {
        return None;
    }
    Some((end, "PHONE", "phone-e164"))
}

fn is_phone_sep(c: u8) -> bool {
    matches!(c, b' ' | b'-' | b'.' | b'(' | b')')
}

/// North American `(NXX) NXX-XXXX`; the 555 exchange is fiction's and is skipped.
fn phone_nanp(b: &[u8], i: usize) -> Option<Hit> {
    if !(digits_at(b, i + 1, 3) && b.get(i + 4) == Some(&b')')) {
        return None;
    }
    let mut p = i + 5;
    if b.get(p) == Some(&b' ') {
        p += 1;
    }
    nanp_rest(b, i + 1, p)
}

fn nanp_rest(b: &[u8], area: usize, p: usize) -> Option<Hit> {
    if !(digits_at(b, p, 3)
        && matches!(b.get(p + 3), Some(b'-' | b'.' | b' '))
        && digits_at(b, p + 4, 4))
    {
        return None;
    }
    let end = p + 8;
    let ok =
        (b'2'..=b'9').contains(&b[area]) && (b'2'..=b'9').contains(&b[p]) && &b[p..p + 3] != b"555";
    (ok && ends_clean(b, end)).then_some((end, "PHONE", "phone-nanp"))
}

/// `NXX-NXX-XXXX` (North America) or a UK-style `0…` number in 2–3 spaced groups of 10–11
/// digits.
fn phone_national(b: &[u8], i: usize) -> Option<Hit> {
    if digits_at(b, i, 3) && matches!(b.get(i + 3), Some(b'-' | b'.')) {
        let sep = b[i + 3];
        if digits_at(b, i + 4, 3) && b.get(i + 7) == Some(&sep) {
            return nanp_rest(b, i, i + 4);
        }
    }
    if b[i] != b'0' || !b.get(i + 1).is_some_and(|c| (b'1'..=b'9').contains(c)) {
        return None;
    }
    let mut p = i;
    let (mut n, mut groups, mut run) = (0, 1, 0);
    let mut end = i;
    while p < b.len() {
        let c = b[p];
        if c.is_ascii_digit() {
            n += 1;
            run += 1;
            p += 1;
            end = p;
        } else if c == b' ' && run >= 3 && digits_at(b, p + 1, 3) {
            groups += 1;
            run = 0;
            p += 1;
        } else {
            break;
        }
    }
    ((10..=11).contains(&n) && (2..=3).contains(&groups) && run >= 3 && ends_clean(b, end))
        .then_some((end, "PHONE", "phone-uk"))
}

// ------------------------------------------------------------------------------ identifiers

/// UK national insurance number: two letters from the allowed set, six digits (optionally
/// spaced in pairs), a suffix A–D.
fn nino(b: &[u8], i: usize) -> Option<Hit> {
    let (c1, c2) = (*b.get(i)?, *b.get(i + 1)?);
    if !c2.is_ascii_uppercase()
        || b"DFIQUV".contains(&c1)
        || b"DFIOQUV".contains(&c2)
        || [b"BG", b"GB", b"KN", b"NK", b"NT", b"TN", b"ZZ"].contains(&&[c1, c2])
    {
        return None;
    }
    let mut p = i + 2;
    let spaced = b.get(p) == Some(&b' ');
    for _ in 0..3 {
        if spaced {
            if b.get(p) != Some(&b' ') {
                return None;
            }
            p += 1;
        }
        if !digits_at(b, p, 2) {
            return None;
        }
        p += 2;
    }
    if spaced && b.get(p) == Some(&b' ') {
        p += 1;
    }
    if !matches!(b.get(p), Some(b'A'..=b'D')) || !ends_clean(b, p + 1) {
        return None;
    }
    Some((p + 1, "NINO", "uk-nino"))
}

/// IBAN lengths by country (ISO 13616 registry).
const IBAN_LENGTHS: &[(&[u8; 2], usize)] = &[
    (b"AD", 24),
    (b"AE", 23),
    (b"AL", 28),
    (b"AT", 20),
    (b"AZ", 28),
    (b"BA", 20),
    (b"BE", 16),
    (b"BG", 22),
    (b"BH", 22),
    (b"BR", 29),
    (b"CH", 21),
    (b"CR", 22),
    (b"CY", 28),
    (b"CZ", 24),
    (b"DE", 22),
    (b"DK", 18),
    (b"DO", 28),
    (b"EE", 20),
    (b"EG", 29),
    (b"ES", 24),
    (b"FI", 18),
    (b"FO", 18),
    (b"FR", 27),
    (b"GB", 22),
    (b"GE", 22),
    (b"GI", 23),
    (b"GL", 18),
    (b"GR", 27),
    (b"GT", 28),
    (b"HR", 21),
    (b"HU", 28),
    (b"IE", 22),
    (b"IL", 23),
    (b"IS", 26),
    (b"IT", 27),
    (b"JO", 30),
    (b"KW", 30),
    (b"KZ", 20),
    (b"LB", 28),
    (b"LI", 21),
    (b"LT", 20),
    (b"LU", 20),
    (b"LV", 21),
    (b"MC", 27),
    (b"MD", 24),
    (b"ME", 22),
    (b"MK", 19),
    (b"MR", 27),
    (b"MT", 31),
    (b"MU", 30),
    (b"NL", 18),
    (b"NO", 15),
    (b"PK", 24),
    (b"PL", 28),
    (b"PS", 29),
    (b"PT", 25),
    (b"QA", 29),
    (b"RO", 24),
    (b"RS", 22),
    (b"SA", 24),
    (b"SE", 24),
    (b"SI", 19),
    (b"SK", 24),
    (b"SM", 27),
    (b"TN", 24),
    (b"TR", 26),
    (b"UA", 29),
    (b"VG", 24),
    (b"XK", 20),
];

/// An IBAN, contiguous or printed in groups of four, with its country's length and a valid
/// mod-97 check.
fn iban(b: &[u8], i: usize) -> Option<Hit> {
    if !(b.get(i + 1).is_some_and(u8::is_ascii_uppercase) && digits_at(b, i + 2, 2)) {
        return None;
    }
    let country = [b[i], b[i + 1]];
    let len = IBAN_LENGTHS.iter().find(|(c, _)| **c == country)?.1;
    let mut chars = Vec::with_capacity(len);
    let mut p = i;
    let mut end = i;
    while p < b.len() && chars.len() < len {
        let c = b[p];
        if c.is_ascii_digit() || c.is_ascii_uppercase() {
            chars.push(c);
            p += 1;
            end = p;
        } else if c == b' ' && chars.len().is_multiple_of(4) && end == p {
            p += 1;
        } else {
            break;
        }
    }
    if chars.len() != len || !ends_clean(b, end) || !mod97(&chars) {
        return None;
    }
    Some((end, "IBAN", "iban"))
}

pub(crate) fn mod97(chars: &[u8]) -> bool {
    let mut rem: u32 = 0;
    for &c in chars[4..].iter().chain(&chars[..4]) {
        let v = if c.is_ascii_digit() {
            u32::from(c - b'0')
        } else {
            u32::from(c - b'A') + 10
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}
