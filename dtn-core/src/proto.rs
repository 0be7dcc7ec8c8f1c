//! Wire formats of our own BPv7 extensions: three extension blocks and four administrative records.
//!
//! They only ever travel between our own nodes, so they use the code points RFC 9171 §9.1 (block types
//! 192–255) and RFC 9713 (administrative record types above 65535) set aside for private and experimental
//! use, and a foreign node that meets them forwards them untouched. `docs/protocol.md` has every format
//! byte for byte, with the reasons behind each choice.
//!
//! | item | code point | carries |
//! |---|---|---|
//! | [`BundleClass`] block | [`BUNDLE_CLASS_BLOCK`] (192) | priority, "sequence numbers never repeat" |
//! | [`CustodyRequest`] block | [`CUSTODY_REQUEST_BLOCK`] (193) | the node that wants a custody signal |
//! | spray copies block | [`SPRAY_COPIES_BLOCK`] (194) | spray-and-wait copies handed over |
//! | [`CustodySignal`] record | [`CUSTODY_SIGNAL_RECORD`] (65537) | accept/refuse custody of many bundles |
//! | [`Hello`] record | [`HELLO_RECORD`] (65538) | who I am, what I hold, what I know delivered |
//! | [`Receipts`] record | [`RECEIPTS_RECORD`] (65539) | delivery knowledge learned during a contact |
//! | [`Offer`] record | [`OFFER_RECORD`] (65540) | bundles stored during a contact; which offered ones to send |
//!
//! Every encoder writes canonical CBOR (definite lengths, shortest-form heads) and every decoder accepts
//! only that, so each value has exactly one encoding. That is what makes the signature fields workable: a
//! verifier re-encodes what it decoded ([`CustodySignal::signed_bytes`] and friends) and gets exactly the
//! bytes the sender signed. Decoders never panic and never allocate according to a length read from the
//! input; lists have fixed caps ([`MAX_IDS`], [`MAX_ENDPOINTS`]).

use std::num::NonZeroU64;

use thiserror::Error;

use crate::bpv7::admin::AdminRecord;
use crate::bpv7::cbor::{MAJOR_ARRAY, MAJOR_BYTES, MAJOR_UINT, Reader, head_len, write_head};
use crate::bpv7::{BlockType, Bundle, BundleId, CreationTimestamp, DecodeError, DtnTime, Eid, Limits};
use crate::store::{Priority, SeqMode, Summary};

/// Block type of [`BundleClass`]: the first private block type (RFC 9171 §9.1), so no IANA assignment can
/// ever collide with it.
pub const BUNDLE_CLASS_BLOCK: BlockType = BlockType(192);
/// Block type of [`CustodyRequest`], next to the bundle class in the private range.
pub const CUSTODY_REQUEST_BLOCK: BlockType = BlockType(193);
/// Block type of the spray-and-wait copies block ([`encode_copies`], [`decode_copies`]).
pub const SPRAY_COPIES_BLOCK: BlockType = BlockType(194);

/// Administrative record type of [`CustodySignal`]. RFC 9713 reserves types above 65535 for private and
/// experimental use; 65536, the first of them, is left to whatever experiment picks "the first one".
pub const CUSTODY_SIGNAL_RECORD: u64 = 65_537;
/// Administrative record type of [`Hello`].
pub const HELLO_RECORD: u64 = 65_538;
/// Administrative record type of [`Receipts`].
pub const RECEIPTS_RECORD: u64 = 65_539;
/// Administrative record type of [`Offer`].
pub const OFFER_RECORD: u64 = 65_540;

/// Format version written first in a [`Hello`], so a node can tell a newer peer's hello from garbage and
/// say so instead of reporting it malformed.
pub const HELLO_VERSION: u64 = 1;
/// Format version written first in a [`Receipts`] record, for the same reason as [`HELLO_VERSION`].
pub const RECEIPTS_VERSION: u64 = 1;
/// Format version written first in an [`Offer`], for the same reason as [`HELLO_VERSION`].
pub const OFFER_VERSION: u64 = 1;

/// Most bundle IDs one custody signal may carry. Far above what one contact acknowledges, yet a bound on
/// the work a hostile signal can cause.
pub const MAX_IDS: usize = 100_000;
/// Most endpoints one [`Hello`] may list: a node registers a handful, so this only bounds hostile input.
pub const MAX_ENDPOINTS: usize = 1024;

/// CBOR `null`, the "no signature" value.
const NULL: u8 = 0xf6;
/// The shortest possible bundle ID, `[[1, 0], [0, 0]]` (`82 82 01 00 82 00 00`): bounds how many IDs the
/// remaining input can hold, so a declared count never sizes an allocation by itself.
const MIN_ID_LEN: usize = 7;
/// The shortest possible EID (`82 01 00`, dtn:none), for the same bound on endpoint lists.
const MIN_EID_LEN: usize = 3;

/// Why one of our blocks or records could not be decoded. The router drops what fails; the message says
/// precisely why, for the log and for whoever debugs a misbehaving peer.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ProtoError {
    /// The bytes are not the format: bad CBOR, wrong shape, a value out of range, or a non-canonical
    /// encoding (which would break signatures and make one value look like two).
    #[error("malformed {what}: {detail}")]
    Malformed {
        /// Which block or record.
        what: &'static str,
        /// What is wrong, with the byte offset where it is known.
        detail: String,
    },
    /// A versioned record from a newer (or broken) peer; kept apart from `Malformed` so the router can log
    /// "upgrade needed" rather than "attack or bug".
    #[error("{what} format version {version} is not supported (this node reads version {supported})")]
    UnsupportedVersion {
        /// Which record.
        what: &'static str,
        /// Version found.
        version: u64,
        /// Version this node reads.
        supported: u64,
    },
    /// A list longer than its cap: refused before any of it is read, so it costs nothing.
    #[error("{what} lists {count} {items}, more than the limit of {limit}")]
    TooMany {
        /// Which record.
        what: &'static str,
        /// What the list holds.
        items: &'static str,
        /// Length declared.
        count: u64,
        /// The cap.
        limit: usize,
    },
    /// Two blocks of a type that may occur once: the bundle is ambiguous (which priority? which
    /// custodian?), so neither is believed.
    #[error("bundle carries more than one {what}")]
    DuplicateBlock {
        /// Which block.
        what: &'static str,
    },
}

type Result<T, E = ProtoError> = std::result::Result<T, E>;

fn malformed(what: &'static str, detail: impl Into<String>) -> ProtoError {
    ProtoError::Malformed { what, detail: detail.into() }
}

// ---------------------------------------------------------------------------------------------------------
// Strict reading
// ---------------------------------------------------------------------------------------------------------

/// The crate's CBOR reader plus the canonical-form rules of our formats: definite lengths, shortest heads,
/// and nothing after the last item. The bundle codec must accept other encoders' liberties (RFC 9171 §4.1);
/// our formats have only our own encoder, so anything else is refused.
struct Strict<'b> {
    r: Reader<'b>,
    what: &'static str,
}

impl<'b> Strict<'b> {
    fn new(input: &'b [u8], what: &'static str) -> Self {
        Strict { r: Reader::new(input), what }
    }

    fn pos(&self) -> usize {
        self.r.pos()
    }

    fn remaining(&self) -> usize {
        self.r.input().len().saturating_sub(self.r.pos())
    }

    fn cbor(&self, e: DecodeError) -> ProtoError {
        malformed(self.what, e.to_string())
    }

    fn non_canonical(&self, at: usize, item: &str) -> ProtoError {
        malformed(self.what, format!("byte {at}: {item} is not in canonical form (definite length, shortest head)"))
    }

    fn shortest(&self, at: usize, arg: u64, item: &str) -> Result<()> {
        if self.r.pos() - at == head_len(arg) { Ok(()) } else { Err(self.non_canonical(at, item)) }
    }

    fn uint(&mut self, item: &'static str) -> Result<u64> {
        let at = self.pos();
        let v = self.r.u64(item).map_err(|e| self.cbor(e))?;
        self.shortest(at, v, item)?;
        Ok(v)
    }

    fn array(&mut self, item: &'static str) -> Result<u64> {
        let at = self.pos();
        match self.r.array(item).map_err(|e| self.cbor(e))? {
            Some(n) => self.shortest(at, n, item).map(|()| n),
            None => Err(self.non_canonical(at, item)),
        }
    }

    fn array_of(&mut self, n: u64, item: &'static str) -> Result<()> {
        let at = self.pos();
        let got = self.array(item)?;
        if got != n {
            return Err(malformed(self.what, format!("byte {at}: {item} has {got} items, expected {n}")));
        }
        Ok(())
    }

    fn bytes(&mut self, item: &'static str) -> Result<&'b [u8]> {
        let at = self.pos();
        let len = self.r.bytes_header(item).map_err(|e| self.cbor(e))?;
        self.shortest(at, len, item)?;
        let input = self.r.input();
        let start = self.pos();
        // `len` is untrusted (up to u64::MAX): check it against the input before slicing anything.
        let data =
            usize::try_from(len)
                .ok()
                .and_then(|l| start.checked_add(l))
                .and_then(|end| input.get(start..end))
                .ok_or_else(|| malformed(self.what, format!("byte {at}: {item} of {len} bytes runs past the end")))?;
        self.r.set_pos(start + data.len());
        Ok(data)
    }

    fn eid(&mut self, item: &'static str) -> Result<Eid> {
        let at = self.pos();
        let eid = Eid::decode(&mut self.r, item, Limits::default().max_eid_len).map_err(|e| self.cbor(e))?;
        // The EID decoder keeps other encoders' liberties (indefinite arrays, chunked text, long heads);
        // re-encoding shows whether this one was canonical. An unknown scheme's SSP is kept as received,
        // so it passes whatever it holds: it is opaque to us anyway.
        let canonical = self.r.input().get(at..self.pos()).is_some_and(|raw| eid.to_cbor() == raw);
        if !canonical {
            return Err(self.non_canonical(at, item));
        }
        Ok(eid)
    }

    /// An EID that names a node we could send to: not null and not LocalNode (RFC 9758 §5.4), which would
    /// mean "the receiver itself".
    fn node_eid(&mut self, item: &'static str) -> Result<Eid> {
        let at = self.pos();
        let eid = self.eid(item)?;
        if eid.is_null() || eid.is_local_node() {
            return Err(malformed(self.what, format!("byte {at}: {item} {eid} does not name a node")));
        }
        Ok(eid)
    }

    fn signature(&mut self) -> Result<Option<Vec<u8>>> {
        if self.r.input().get(self.pos()) == Some(&NULL) {
            self.r.set_pos(self.pos() + 1);
            return Ok(None);
        }
        self.bytes("the signature (null or a byte string)").map(|s| Some(s.to_vec()))
    }

    fn summary(&mut self, item: &'static str) -> Result<Summary> {
        Ok(self.summary_unless(item, None)?.unwrap_or_default())
    }

    /// A summary, or `None` if its bytes are exactly `same` (which must be a canonical encoding, such as
    /// [`Summary::to_bytes`] writes): a value the caller has already, so not decoded again.
    fn summary_unless(&mut self, item: &'static str, same: Option<&[u8]>) -> Result<Option<Summary>> {
        let at = self.pos();
        let raw = self.bytes(item)?;
        if same.is_some_and(|s| s == raw) {
            return Ok(None);
        }
        let (s, canonical) =
            Summary::decode_checked(raw).map_err(|e| malformed(self.what, format!("byte {at}: {item}: {e}")))?;
        // Summary::decode tolerates a few non-canonical spellings (long varints, repeated fragments); one
        // encoding per value is what the signature needs.
        if !canonical {
            return Err(self.non_canonical(at, item));
        }
        Ok(Some(s))
    }

    fn version(&mut self, supported: u64) -> Result<()> {
        let version = self.uint("the format version")?;
        if version != supported {
            return Err(ProtoError::UnsupportedVersion { what: self.what, version, supported });
        }
        Ok(())
    }

    /// A list head no longer than `limit` and than the input could hold at `min_len` bytes per item, so the
    /// count is safe to reserve.
    fn list(&mut self, item: &'static str, items: &'static str, limit: usize, min_len: usize) -> Result<usize> {
        let n = self.array(item)?;
        if n > limit as u64 {
            return Err(ProtoError::TooMany { what: self.what, items, count: n, limit });
        }
        let fits = (self.remaining() / min_len) as u64;
        if n > fits {
            return Err(malformed(self.what, format!("{item} declares {n} {items}; the input holds at most {fits}")));
        }
        Ok(n as usize)
    }

    fn finish(self) -> Result<()> {
        let extra = self.remaining();
        if extra != 0 {
            return Err(malformed(self.what, format!("{extra} trailing bytes after the item")));
        }
        Ok(())
    }
}

/// The one block of type `ty` in `bundle`, if any.
fn only_block<'b>(bundle: &'b Bundle<'_>, ty: BlockType, what: &'static str) -> Result<Option<&'b [u8]>> {
    let mut blocks = bundle.extension_blocks().iter().filter(|b| b.block_type() == ty);
    let Some(first) = blocks.next() else { return Ok(None) };
    if blocks.next().is_some() {
        return Err(ProtoError::DuplicateBlock { what });
    }
    Ok(Some(first.data()))
}

fn write_signature(out: &mut Vec<u8>, signature: &Option<Vec<u8>>) {
    match signature {
        None => out.push(NULL),
        Some(s) => {
            write_head(out, MAJOR_BYTES, s.len() as u64);
            out.extend_from_slice(s);
        }
    }
}

fn write_hello(out: &mut Vec<u8>, node: &Eid, endpoints: &[Eid], held: &[u8], delivered: &[u8], routing: &[u8]) {
    write_head(out, MAJOR_ARRAY, 7);
    write_head(out, MAJOR_UINT, HELLO_VERSION);
    node.encode(out);
    write_head(out, MAJOR_ARRAY, endpoints.len() as u64);
    for e in endpoints {
        e.encode(out);
    }
    write_bytes(out, held);
    write_bytes(out, delivered);
    write_bytes(out, routing);
}

fn write_bytes(out: &mut Vec<u8>, b: &[u8]) {
    write_head(out, MAJOR_BYTES, b.len() as u64);
    out.extend_from_slice(b);
}

/// The start of the administrative-record payload `[record type, content]` up to the content: what every
/// signature covers first, so a signature made for one record type can never pass for another.
fn admin_prefix(record_type: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    write_head(&mut out, MAJOR_ARRAY, 2);
    write_head(&mut out, MAJOR_UINT, record_type);
    out
}

// ---------------------------------------------------------------------------------------------------------
// Bundle class block
// ---------------------------------------------------------------------------------------------------------

/// What a source declares about its bundle that every hop needs: how urgent it is (transmission order and
/// eviction) and how its ID is keyed in contact summaries. Carried in the [`BUNDLE_CLASS_BLOCK`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct BundleClass {
    /// Transmission and eviction priority.
    pub priority: Priority,
    /// The source never reuses a sequence number, whatever its clock does, so summaries can key its
    /// bundles by sequence number alone ([`SeqMode::Unique`]) and a station's output stays one run.
    pub unique_seq: bool,
}

impl BundleClass {
    /// Flag bit for [`unique_seq`](Self::unique_seq). Other bits are reserved: ignored on decode, so a later
    /// version can add flags without older nodes refusing the block.
    pub const FLAG_UNIQUE_SEQ: u64 = 0x01;
    const WHAT: &'static str = "bundle-class block";

    /// The summary keying mode the source declared, so callers never re-derive it from the flag.
    pub fn seq_mode(&self) -> SeqMode {
        if self.unique_seq { SeqMode::Unique } else { SeqMode::PerTime }
    }

    /// Block-type-specific data: `[priority, flags]`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4);
        write_head(&mut out, MAJOR_ARRAY, 2);
        write_head(&mut out, MAJOR_UINT, u64::from(self.priority.0));
        write_head(&mut out, MAJOR_UINT, if self.unique_seq { Self::FLAG_UNIQUE_SEQ } else { 0 });
        out
    }

    /// Parses block data from a peer; unknown flag bits are ignored (see [`FLAG_UNIQUE_SEQ`](Self::FLAG_UNIQUE_SEQ)).
    pub fn decode(data: &[u8]) -> Result<BundleClass, ProtoError> {
        let mut c = Strict::new(data, Self::WHAT);
        c.array_of(2, "the bundle class [priority, flags]")?;
        let at = c.pos();
        let priority = c.uint("the priority")?;
        let priority = u8::try_from(priority)
            .map_err(|_| malformed(Self::WHAT, format!("byte {at}: priority {priority} is above 255")))?;
        let flags = c.uint("the flags")?;
        c.finish()?;
        Ok(BundleClass { priority: Priority(priority), unique_seq: flags & Self::FLAG_UNIQUE_SEQ != 0 })
    }

    /// The class a received bundle declares; `None` when it has no bundle-class block (a foreign source:
    /// the caller applies its defaults).
    pub fn of(bundle: &Bundle<'_>) -> Result<Option<BundleClass>, ProtoError> {
        only_block(bundle, BUNDLE_CLASS_BLOCK, Self::WHAT)?.map(Self::decode).transpose()
    }
}

// ---------------------------------------------------------------------------------------------------------
// Custody request block
// ---------------------------------------------------------------------------------------------------------

/// Asks the receiver to take custody and to tell the current custodian whether it did. The custodian is
/// named explicitly, not taken from the previous-node block, because custody may be held further back than
/// the last hop (a node that forwards without taking custody leaves this block alone).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CustodyRequest {
    /// The node that holds custody now and is waiting for a [`CustodySignal`].
    pub custodian: Eid,
}

impl CustodyRequest {
    const WHAT: &'static str = "custody-request block";

    /// Block-type-specific data: `[custodian]`. An array, not a bare EID, so fields can be added later.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + self.custodian.encoded_len());
        write_head(&mut out, MAJOR_ARRAY, 1);
        self.custodian.encode(&mut out);
        out
    }

    /// Parses block data from a peer; a null or LocalNode custodian is refused, since no signal could reach it.
    pub fn decode(data: &[u8]) -> Result<CustodyRequest, ProtoError> {
        let mut c = Strict::new(data, Self::WHAT);
        c.array_of(1, "the custody request [custodian]")?;
        let custodian = c.node_eid("the custodian")?;
        c.finish()?;
        Ok(CustodyRequest { custodian })
    }

    /// The custody request a received bundle carries, if any.
    pub fn of(bundle: &Bundle<'_>) -> Result<Option<CustodyRequest>, ProtoError> {
        only_block(bundle, CUSTODY_REQUEST_BLOCK, Self::WHAT)?.map(Self::decode).transpose()
    }
}

// ---------------------------------------------------------------------------------------------------------
// Spray copies block
// ---------------------------------------------------------------------------------------------------------

const COPIES_WHAT: &str = "spray-copies block";

/// Data of the [`SPRAY_COPIES_BLOCK`]: the number of spray-and-wait copies the receiver now owns, its own
/// included, as a bare unsigned integer (it is rewritten at every hop, so it is kept as small as it can be).
/// Never pass 0: a receiver always owns at least its own copy (with 1 it is in the wait phase and hands the
/// bundle only to the destination), and decoders refuse 0.
pub fn encode_copies(copies: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(5);
    write_head(&mut out, MAJOR_UINT, u64::from(copies));
    out
}

/// Parses the copies block data; 0 and values beyond `u32` are refused, so a peer cannot hand out copies
/// that do not exist.
pub fn decode_copies(data: &[u8]) -> Result<u32, ProtoError> {
    let mut c = Strict::new(data, COPIES_WHAT);
    let n = c.uint("the copy count")?;
    c.finish()?;
    match u32::try_from(n) {
        Ok(0) => Err(malformed(COPIES_WHAT, "0 copies (a bundle without copies carries no copies block)")),
        Ok(n) => Ok(n),
        Err(_) => Err(malformed(COPIES_WHAT, format!("{n} copies is beyond 2^32 - 1"))),
    }
}

/// The copies a received bundle hands over; `None` when it carries no copies block.
pub fn copies_of(bundle: &Bundle<'_>) -> Result<Option<u32>, ProtoError> {
    only_block(bundle, SPRAY_COPIES_BLOCK, COPIES_WHAT)?.map(decode_copies).transpose()
}

// ---------------------------------------------------------------------------------------------------------
// Custody signal
// ---------------------------------------------------------------------------------------------------------

/// Why a node refused custody: the custodian's next move depends on it (retry elsewhere, stop, give up).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// Code 1: no room; another node may take it, or this one later.
    StoreFull,
    /// Code 2: the bundle's lifetime has ended; nobody will take it.
    Expired,
    /// Code 3: this node already holds the bundle, or already delivered or deleted it: stop sending it here.
    Duplicate,
    /// Code 4: the hop limit is exhausted.
    HopLimit,
    /// A code this version does not name, kept so a newer peer's reason is not lost. Non-zero by type,
    /// because code 0 means "accepted" and a refusal must never read as one (the custodian would delete its
    /// copy). Codes 1–4 here encode like the named variants and decode as them.
    Other(NonZeroU64),
}

impl Refusal {
    /// The wire code (never 0).
    pub fn code(self) -> u64 {
        match self {
            Refusal::StoreFull => 1,
            Refusal::Expired => 2,
            Refusal::Duplicate => 3,
            Refusal::HopLimit => 4,
            Refusal::Other(c) => c.get(),
        }
    }
}

/// What the receiver did with the custody offered to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Disposition {
    /// Code 0: custody taken; the previous custodian may release its copy.
    Accepted,
    /// Custody refused; the previous custodian keeps responsibility.
    Refused(Refusal),
}

impl Disposition {
    /// The wire code: 0 for accepted, the refusal's code otherwise.
    pub fn code(self) -> u64 {
        match self {
            Disposition::Accepted => 0,
            Disposition::Refused(r) => r.code(),
        }
    }

    /// Reads a wire code; total, because unknown codes are kept as [`Refusal::Other`].
    pub fn from_code(code: u64) -> Disposition {
        match NonZeroU64::new(code) {
            None => Disposition::Accepted,
            Some(c) => Disposition::Refused(match c.get() {
                1 => Refusal::StoreFull,
                2 => Refusal::Expired,
                3 => Refusal::Duplicate,
                4 => Refusal::HopLimit,
                _ => Refusal::Other(c),
            }),
        }
    }
}

/// The answer to one or many custody requests: one signal aggregates every bundle with the same
/// disposition, because a contact may move thousands of bundles and one signal each would double the
/// traffic. Acting on a forged "accepted" makes a custodian delete data, hence the signature field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustodySignal {
    /// Accepted or refused, for every ID listed.
    pub disposition: Disposition,
    /// When the signal was made, so a later security layer can refuse replays.
    pub time: DtnTime,
    /// The bundles (or fragments) it is about.
    pub ids: Vec<BundleId>,
    /// Signature over [`signed_bytes`](Self::signed_bytes), filled in by a security layer; `None` until
    /// there is one.
    pub signature: Option<Vec<u8>>,
}

impl CustodySignal {
    const WHAT: &'static str = "custody signal";

    fn write_unsigned(&self, out: &mut Vec<u8>) {
        write_head(out, MAJOR_ARRAY, 4);
        write_head(out, MAJOR_UINT, self.disposition.code());
        write_head(out, MAJOR_UINT, self.time.0);
        write_head(out, MAJOR_ARRAY, self.ids.len() as u64);
        for id in &self.ids {
            write_id(out, id);
        }
    }

    /// The record content `[disposition, time, [id...], signature]`, as carried in the administrative record.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.ids.len() * 24);
        self.write_unsigned(&mut out);
        write_signature(&mut out, &self.signature);
        out
    }

    /// Parses record content from a peer. At most [`MAX_IDS`] IDs; the count is checked against the input
    /// before anything is reserved.
    pub fn decode(content: &[u8]) -> Result<CustodySignal, ProtoError> {
        let mut c = Strict::new(content, Self::WHAT);
        c.array_of(4, "the custody signal [disposition, time, ids, signature]")?;
        let disposition = Disposition::from_code(c.uint("the disposition code")?);
        let time = DtnTime(c.uint("the signal time")?);
        let n = c.list("the bundle ID list", "bundle IDs", MAX_IDS, MIN_ID_LEN)?;
        let mut ids = Vec::with_capacity(n);
        for _ in 0..n {
            ids.push(read_id(&mut c)?);
        }
        let signature = c.signature()?;
        c.finish()?;
        Ok(CustodySignal { disposition, time, ids, signature })
    }

    /// Exactly what a signer signs and a verifier checks: the administrative-record payload up to the
    /// signature item (`[record type, [disposition, time, ids, ` …), a prefix of
    /// [`OurRecord::to_admin_payload`]. The record type is included so a signature cannot be replayed on
    /// another record type; the signature is excluded, so signing does not change what was signed.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut out = admin_prefix(CUSTODY_SIGNAL_RECORD);
        self.write_unsigned(&mut out);
        out
    }
}

fn write_id(out: &mut Vec<u8>, id: &BundleId) {
    write_head(out, MAJOR_ARRAY, if id.fragment.is_some() { 4 } else { 2 });
    id.source.encode(out);
    write_head(out, MAJOR_ARRAY, 2);
    write_head(out, MAJOR_UINT, id.creation.time.0);
    write_head(out, MAJOR_UINT, id.creation.sequence);
    if let Some((offset, len)) = id.fragment {
        write_head(out, MAJOR_UINT, offset);
        write_head(out, MAJOR_UINT, len);
    }
}

fn read_id(c: &mut Strict<'_>) -> Result<BundleId> {
    let at = c.pos();
    let n = c.array("a bundle ID")?;
    if n != 2 && n != 4 {
        return Err(malformed(c.what, format!("byte {at}: a bundle ID has {n} items, expected 2 or 4")));
    }
    let source = c.eid("the bundle ID source")?;
    c.array_of(2, "the creation timestamp [time, sequence]")?;
    let creation = CreationTimestamp::new(c.uint("the creation time")?, c.uint("the sequence number")?);
    let fragment = if n == 4 { Some((c.uint("the fragment offset")?, c.uint("the fragment length")?)) } else { None };
    Ok(BundleId { source, creation, fragment })
}

// ---------------------------------------------------------------------------------------------------------
// Hello
// ---------------------------------------------------------------------------------------------------------

/// The first thing each side sends on a contact: enough for the peer to send only what is missing (the
/// summaries) and to route (its endpoints and the routing agent's data), in one record so one round trip
/// sets up the contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// The sender's node ID.
    pub node: Eid,
    /// Endpoints the sender delivers to locally: the peer hands it every bundle for them, whatever the
    /// routing agent would otherwise decide.
    pub endpoints: Vec<Eid>,
    /// Bundles the sender holds: the peer skips them.
    pub held: Summary,
    /// Bundles the sender knows delivered: the peer drops its replicas and stops carrying them.
    pub delivered: Summary,
    /// The routing agent's own data (contact history, delivery predictabilities …), opaque here so agents
    /// can change without a new record type.
    pub routing: Vec<u8>,
    /// Signature over [`signed_bytes`](Self::signed_bytes); a forged hello could claim deliveries and make
    /// peers drop data.
    pub signature: Option<Vec<u8>>,
}

impl Hello {
    const WHAT: &'static str = "hello";

    fn write_unsigned(&self, out: &mut Vec<u8>, held: &[u8], delivered: &[u8]) {
        write_hello(out, &self.node, &self.endpoints, held, delivered, &self.routing);
    }

    /// The administrative-record payload of an unsigned hello whose summaries are given in their binary form
    /// ([`Summary::to_bytes`]): the same bytes as [`OurRecord::to_admin_payload`] of the hello, for a sender
    /// that keeps a summary's encoding between contacts instead of encoding it again for each.
    pub fn admin_payload_unsigned(
        node: &Eid,
        endpoints: &[Eid],
        held: &[u8],
        delivered: &[u8],
        routing: &[u8],
    ) -> Vec<u8> {
        let mut out = admin_prefix(HELLO_RECORD);
        out.reserve(32 + held.len() + delivered.len() + routing.len());
        write_hello(&mut out, node, endpoints, held, delivered, routing);
        write_signature(&mut out, &None);
        out
    }

    fn unsigned_into(&self, out: &mut Vec<u8>) {
        let (held, delivered) = (self.held.to_bytes(), self.delivered.to_bytes());
        out.reserve(32 + held.len() + delivered.len() + self.routing.len());
        self.write_unsigned(out, &held, &delivered);
    }

    /// The record content `[version, node, [endpoints], held, delivered, routing, signature]`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.unsigned_into(&mut out);
        write_signature(&mut out, &self.signature);
        out
    }

    /// Parses record content from a peer. A different version is [`ProtoError::UnsupportedVersion`], read
    /// before the rest so a newer format need not keep this one's shape.
    pub fn decode(content: &[u8]) -> Result<Hello, ProtoError> {
        Ok(Hello::decode_against(content, None)?.0)
    }

    /// Decodes a hello whose delivered summary may be byte for byte `ours`, the encoding of the receiver's own
    /// (as [`Summary::to_bytes`] writes it). Once deliveries have spread most hellos carry exactly that: it is
    /// not decoded, `delivered` is left empty and the flag returned is true.
    pub fn decode_against(content: &[u8], ours: Option<&[u8]>) -> Result<(Hello, bool), ProtoError> {
        let mut c = Strict::new(content, Self::WHAT);
        let at = c.pos();
        let n = c.array("the hello array")?;
        c.version(HELLO_VERSION)?;
        if n != 7 {
            return Err(malformed(Self::WHAT, format!("byte {at}: the hello array has {n} items, expected 7")));
        }
        let node = c.node_eid("the node ID")?;
        let count = c.list("the endpoint list", "endpoints", MAX_ENDPOINTS, MIN_EID_LEN)?;
        let mut endpoints = Vec::with_capacity(count);
        for _ in 0..count {
            endpoints.push(c.node_eid("an endpoint")?);
        }
        let held = c.summary("the held summary")?;
        let delivered = c.summary_unless("the delivered summary", ours)?;
        let same = delivered.is_none();
        let routing = c.bytes("the routing data")?.to_vec();
        let signature = c.signature()?;
        c.finish()?;
        Ok((Hello { node, endpoints, held, delivered: delivered.unwrap_or_default(), routing, signature }, same))
    }

    /// What a signer signs: the administrative-record payload up to the signature item; see
    /// [`CustodySignal::signed_bytes`].
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut out = admin_prefix(HELLO_RECORD);
        self.unsigned_into(&mut out);
        out
    }
}

// ---------------------------------------------------------------------------------------------------------
// Receipts
// ---------------------------------------------------------------------------------------------------------

/// Delivery knowledge learned after the hello (a bundle delivered during the contact, or receipts arriving
/// from a third node), so it spreads without waiting for the next contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipts {
    /// Bundles known delivered; may hold only what is new since the hello.
    pub delivered: Summary,
    /// Signature over [`signed_bytes`](Self::signed_bytes), for the same reason as [`Hello::signature`].
    pub signature: Option<Vec<u8>>,
}

impl Receipts {
    const WHAT: &'static str = "receipts";

    fn unsigned_into(&self, out: &mut Vec<u8>) {
        let delivered = self.delivered.to_bytes();
        out.reserve(8 + delivered.len());
        write_head(out, MAJOR_ARRAY, 3);
        write_head(out, MAJOR_UINT, RECEIPTS_VERSION);
        write_bytes(out, &delivered);
    }

    /// The record content `[version, delivered, signature]`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.unsigned_into(&mut out);
        write_signature(&mut out, &self.signature);
        out
    }

    /// Parses record content from a peer; versions as for [`Hello::decode`].
    pub fn decode(content: &[u8]) -> Result<Receipts, ProtoError> {
        let mut c = Strict::new(content, Self::WHAT);
        let at = c.pos();
        let n = c.array("the receipts array")?;
        c.version(RECEIPTS_VERSION)?;
        if n != 3 {
            return Err(malformed(Self::WHAT, format!("byte {at}: the receipts array has {n} items, expected 3")));
        }
        let delivered = c.summary("the delivered summary")?;
        let signature = c.signature()?;
        c.finish()?;
        Ok(Receipts { delivered, signature })
    }

    /// What a signer signs: the administrative-record payload up to the signature item; see
    /// [`CustodySignal::signed_bytes`].
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut out = admin_prefix(RECEIPTS_RECORD);
        self.unsigned_into(&mut out);
        out
    }
}

// ---------------------------------------------------------------------------------------------------------
// Offer
// ---------------------------------------------------------------------------------------------------------

/// Mid-contact inventory: bundles stored since the hello (`held`), and which of the peer's offered bundles
/// to send (`wanted`). Two nodes that get the same bundle at the same moment from a third both announce
/// it, so neither sends it to the other: a bundle crosses a contact at most once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    /// Bundles the sender now holds that the peer may lack; the peer does not send them back.
    pub held: Summary,
    /// Bundles the peer offered that the sender lacks: send them.
    pub wanted: Summary,
    /// Signature over [`signed_bytes`](Self::signed_bytes), for the same reason as [`Hello::signature`].
    pub signature: Option<Vec<u8>>,
}

impl Offer {
    const WHAT: &'static str = "offer";

    fn unsigned_into(&self, out: &mut Vec<u8>) {
        let held = self.held.to_bytes();
        let wanted = self.wanted.to_bytes();
        out.reserve(16 + held.len() + wanted.len());
        write_head(out, MAJOR_ARRAY, 4);
        write_head(out, MAJOR_UINT, OFFER_VERSION);
        write_bytes(out, &held);
        write_bytes(out, &wanted);
    }

    /// The record content `[version, held, wanted, signature]`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.unsigned_into(&mut out);
        write_signature(&mut out, &self.signature);
        out
    }

    /// Parses record content from a peer; versions as for [`Hello::decode`].
    pub fn decode(content: &[u8]) -> Result<Offer, ProtoError> {
        let mut c = Strict::new(content, Self::WHAT);
        let at = c.pos();
        let n = c.array("the offer array")?;
        c.version(OFFER_VERSION)?;
        if n != 4 {
            return Err(malformed(Self::WHAT, format!("byte {at}: the offer array has {n} items, expected 4")));
        }
        let held = c.summary("the held summary")?;
        let wanted = c.summary("the wanted summary")?;
        let signature = c.signature()?;
        c.finish()?;
        Ok(Offer { held, wanted, signature })
    }

    /// What a signer signs: the administrative-record payload up to the signature item; see
    /// [`CustodySignal::signed_bytes`].
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut out = admin_prefix(OFFER_RECORD);
        self.unsigned_into(&mut out);
        out
    }
}

// ---------------------------------------------------------------------------------------------------------
// Administrative records
// ---------------------------------------------------------------------------------------------------------

/// One of our administrative records, so the router handles "an admin record arrived" with one match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OurRecord {
    /// [`CUSTODY_SIGNAL_RECORD`].
    CustodySignal(CustodySignal),
    /// [`HELLO_RECORD`].
    Hello(Hello),
    /// [`RECEIPTS_RECORD`].
    Receipts(Receipts),
    /// [`OFFER_RECORD`].
    Offer(Offer),
}

impl OurRecord {
    /// Its administrative record type code.
    pub fn record_type(&self) -> u64 {
        match self {
            OurRecord::CustodySignal(_) => CUSTODY_SIGNAL_RECORD,
            OurRecord::Hello(_) => HELLO_RECORD,
            OurRecord::Receipts(_) => RECEIPTS_RECORD,
            OurRecord::Offer(_) => OFFER_RECORD,
        }
    }

    /// The record content (the second item of the administrative record).
    pub fn encode(&self) -> Vec<u8> {
        match self {
            OurRecord::CustodySignal(s) => s.encode(),
            OurRecord::Hello(h) => h.encode(),
            OurRecord::Receipts(r) => r.encode(),
            OurRecord::Offer(o) => o.encode(),
        }
    }

    /// The whole payload of the administrative-record bundle, `[record type, content]`, ready for
    /// [`BundleBuilder::payload`](crate::bpv7::BundleBuilder::payload) with the admin-record flag set.
    pub fn to_admin_payload(&self) -> Vec<u8> {
        AdminRecord::Other { record_type: self.record_type(), content: self.encode() }.encode()
    }

    /// Our record inside a decoded administrative record; `Ok(None)` for every other type (status reports,
    /// other implementations' private records), which the caller handles or ignores as before.
    pub fn from_admin(rec: &AdminRecord) -> Result<Option<OurRecord>, ProtoError> {
        let AdminRecord::Other { record_type, content } = rec else { return Ok(None) };
        Ok(Some(match *record_type {
            CUSTODY_SIGNAL_RECORD => OurRecord::CustodySignal(CustodySignal::decode(content)?),
            HELLO_RECORD => OurRecord::Hello(Hello::decode(content)?),
            RECEIPTS_RECORD => OurRecord::Receipts(Receipts::decode(content)?),
            OFFER_RECORD => OurRecord::Offer(Offer::decode(content)?),
            _ => return Ok(None),
        }))
    }

    /// What the record's signature covers (see [`CustodySignal::signed_bytes`]).
    pub fn signed_bytes(&self) -> Vec<u8> {
        match self {
            OurRecord::CustodySignal(s) => s.signed_bytes(),
            OurRecord::Hello(h) => h.signed_bytes(),
            OurRecord::Receipts(r) => r.signed_bytes(),
            OurRecord::Offer(o) => o.signed_bytes(),
        }
    }

    /// The record's signature, so a security layer can verify any record without matching on it.
    pub fn signature(&self) -> Option<&[u8]> {
        match self {
            OurRecord::CustodySignal(s) => s.signature.as_deref(),
            OurRecord::Hello(h) => h.signature.as_deref(),
            OurRecord::Receipts(r) => r.signature.as_deref(),
            OurRecord::Offer(o) => o.signature.as_deref(),
        }
    }
}

impl From<CustodySignal> for OurRecord {
    fn from(s: CustodySignal) -> Self {
        OurRecord::CustodySignal(s)
    }
}

impl From<Hello> for OurRecord {
    fn from(h: Hello) -> Self {
        OurRecord::Hello(h)
    }
}

impl From<Receipts> for OurRecord {
    fn from(r: Receipts) -> Self {
        OurRecord::Receipts(r)
    }
}

impl From<Offer> for OurRecord {
    fn from(o: Offer) -> Self {
        OurRecord::Offer(o)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::bpv7::BundleBuilder;
    use crate::bpv7::admin::{StatusAssertion, StatusReport};
    use crate::bpv7::{BlockFlags, IpnEid, IpnForm};

    fn id(source: Eid, t: u64, q: u64, fragment: Option<(u64, u64)>) -> BundleId {
        BundleId { source, creation: CreationTimestamp::new(t, q), fragment }
    }

    fn signal() -> CustodySignal {
        CustodySignal {
            disposition: Disposition::Refused(Refusal::Duplicate),
            time: DtnTime(1000),
            ids: vec![id(Eid::ipn(3, 1), 700, 2, None)],
            signature: None,
        }
    }

    fn empty_hello() -> Hello {
        Hello {
            node: Eid::ipn(5, 0),
            endpoints: vec![Eid::ipn(5, 1)],
            held: Summary::new(),
            delivered: Summary::new(),
            routing: vec![],
            signature: Some(vec![0xaa]),
        }
    }

    // ---- pinned wire format ------------------------------------------------------------------------------

    #[test]
    fn bundle_class_bytes() {
        let c = BundleClass { priority: Priority(200), unique_seq: true };
        // [200, 1]
        assert_eq!(c.encode(), [0x82, 0x18, 0xc8, 0x01]);
        assert_eq!(BundleClass::decode(&c.encode()), Ok(c));
        assert_eq!(c.seq_mode(), SeqMode::Unique);
        let d = BundleClass::default();
        assert_eq!((d.encode(), d.seq_mode()), (vec![0x82, 0x18, 0x80, 0x00], SeqMode::PerTime));
    }

    #[test]
    fn custody_request_bytes() {
        let r = CustodyRequest { custodian: Eid::ipn(5, 0) };
        // [[2, [5, 0]]]
        assert_eq!(r.encode(), [0x81, 0x82, 0x02, 0x82, 0x05, 0x00]);
        assert_eq!(CustodyRequest::decode(&r.encode()), Ok(r));
        let dtn = CustodyRequest { custodian: Eid::dtn("a", "").unwrap() };
        // [[1, "//a/"]]
        assert_eq!(dtn.encode(), [0x81, 0x82, 0x01, 0x64, b'/', b'/', b'a', b'/']);
    }

    #[test]
    fn copies_bytes() {
        assert_eq!(encode_copies(8), [0x08]);
        assert_eq!(encode_copies(300), [0x19, 0x01, 0x2c]);
        assert_eq!(encode_copies(u32::MAX), [0x1a, 0xff, 0xff, 0xff, 0xff]);
        for n in [1, 8, 300, u32::MAX] {
            assert_eq!(decode_copies(&encode_copies(n)), Ok(n));
        }
    }

    #[test]
    fn custody_signal_bytes() {
        let s = signal();
        // [3, 1000, [[[2, [3, 1]], [700, 2]]], null]
        let content = [
            0x84, 0x03, 0x19, 0x03, 0xe8, 0x81, 0x82, 0x82, 0x02, 0x82, 0x03, 0x01, 0x82, 0x19, 0x02, 0xbc, 0x02, 0xf6,
        ];
        assert_eq!(s.encode(), content);
        // [65537, content]
        let mut payload = vec![0x82, 0x1a, 0x00, 0x01, 0x00, 0x01];
        payload.extend_from_slice(&content);
        let rec = OurRecord::from(s.clone());
        assert_eq!(rec.to_admin_payload(), payload);
        assert_eq!(s.signed_bytes(), payload[..payload.len() - 1]);
        // A fragment ID has four items: [source, [time, seq], offset, length].
        let f = CustodySignal {
            disposition: Disposition::Accepted,
            time: DtnTime(0),
            ids: vec![id(Eid::ipn(3, 1), 0, 0, Some((10, 20)))],
            signature: Some(vec![1, 2]),
        };
        assert_eq!(
            f.encode(),
            [
                0x84, 0x00, 0x00, 0x81, 0x84, 0x82, 0x02, 0x82, 0x03, 0x01, 0x82, 0x00, 0x00, 0x0a, 0x14, 0x42, 0x01,
                0x02
            ]
        );
        assert_eq!(CustodySignal::decode(&f.encode()), Ok(f));
    }

    #[test]
    fn hello_bytes() {
        let h = empty_hello();
        // [1, [2, [5, 0]], [[2, [5, 1]]], h'0100', h'0100', h'', h'aa']
        let content = [
            0x87, 0x01, 0x82, 0x02, 0x82, 0x05, 0x00, 0x81, 0x82, 0x02, 0x82, 0x05, 0x01, 0x42, 0x01, 0x00, 0x42, 0x01,
            0x00, 0x40, 0x41, 0xaa,
        ];
        assert_eq!(h.encode(), content);
        assert_eq!(Hello::decode(&content), Ok(h.clone()));
        let payload = OurRecord::from(h.clone()).to_admin_payload();
        assert_eq!(payload[..6], [0x82, 0x1a, 0x00, 0x01, 0x00, 0x02]);
        assert_eq!(payload[6..], content);
        assert_eq!(h.signed_bytes(), payload[..payload.len() - 2]);
    }

    #[test]
    fn receipts_bytes() {
        let r = Receipts { delivered: Summary::new(), signature: None };
        // [1, h'0100', null]
        assert_eq!(r.encode(), [0x83, 0x01, 0x42, 0x01, 0x00, 0xf6]);
        let payload = OurRecord::from(r.clone()).to_admin_payload();
        assert_eq!(payload, [0x82, 0x1a, 0x00, 0x01, 0x00, 0x03, 0x83, 0x01, 0x42, 0x01, 0x00, 0xf6]);
        assert_eq!(Receipts::decode(&r.encode()), Ok(r));
    }

    #[test]
    fn offer_bytes() {
        let mut held = Summary::new();
        held.insert(&id(Eid::ipn(3, 1), 700, 2, None), SeqMode::PerTime);
        let o = Offer { held, wanted: Summary::new(), signature: None };
        // [1, h'010182028203010001bc0501020000', h'0100', null]
        let mut content = vec![0x84, 0x01, 0x4f];
        content.extend_from_slice(&[
            0x01, 0x01, 0x82, 0x02, 0x82, 0x03, 0x01, 0x00, 0x01, 0xbc, 0x05, 0x01, 0x02, 0x00, 0x00,
        ]);
        content.extend_from_slice(&[0x42, 0x01, 0x00, 0xf6]);
        assert_eq!(o.encode(), content);
        let payload = OurRecord::from(o.clone()).to_admin_payload();
        assert_eq!(payload[..6], [0x82, 0x1a, 0x00, 0x01, 0x00, 0x04]);
        assert_eq!(payload[6..], content);
        assert_eq!(Offer::decode(&content), Ok(o));
        // Three items is a receipts shape, not an offer.
        assert!(Offer::decode(&[0x83, 0x01, 0x42, 0x01, 0x00, 0xf6]).is_err());
    }

    #[test]
    fn summary_bytes_in_protocol_md() {
        let mut d = Summary::new();
        d.insert(&id(Eid::ipn(3, 1), 700, 2, None), SeqMode::PerTime);
        let summary = [0x01, 0x01, 0x82, 0x02, 0x82, 0x03, 0x01, 0x00, 0x01, 0xbc, 0x05, 0x01, 0x02, 0x00, 0x00];
        assert_eq!(d.to_bytes(), summary);
        let mut receipts = vec![0x83, 0x01, 0x4f];
        receipts.extend_from_slice(&summary);
        receipts.push(0xf6);
        assert_eq!(Receipts { delivered: d, signature: None }.encode(), receipts);

        let s1 = Eid::dtn("s1", "").unwrap();
        let mut u = Summary::new();
        for q in 0..=49 {
            u.insert(&id(s1.clone(), 800_000_000_000 + q, q, None), SeqMode::Unique);
        }
        u.insert(&id(s1, 5, 7, Some((0, 100))), SeqMode::PerTime);
        let expected = [
            0x01, 0x01, 0x82, 0x01, 0x65, b'/', b'/', b's', b'1', b'/', 0x01, 0x00, 0x31, 0x00, 0x01, 0x05, 0x07, 0x00,
            0x64,
        ];
        assert_eq!(u.to_bytes(), expected);
        assert_eq!(encode_copies(1), [0x01]);
    }

    // ---- semantics ---------------------------------------------------------------------------------------

    #[test]
    fn dispositions() {
        for (code, d) in [
            (0, Disposition::Accepted),
            (1, Disposition::Refused(Refusal::StoreFull)),
            (2, Disposition::Refused(Refusal::Expired)),
            (3, Disposition::Refused(Refusal::Duplicate)),
            (4, Disposition::Refused(Refusal::HopLimit)),
        ] {
            assert_eq!((Disposition::from_code(code), d.code()), (d, code));
        }
        let other = Disposition::from_code(77);
        assert_eq!(other, Disposition::Refused(Refusal::Other(NonZeroU64::new(77).unwrap())));
        assert_eq!(other.code(), 77);
        // An "other" code that this version names decodes as the named refusal, never as acceptance.
        let two = Disposition::Refused(Refusal::Other(NonZeroU64::new(2).unwrap()));
        assert_eq!(Disposition::from_code(two.code()), Disposition::Refused(Refusal::Expired));
    }

    #[test]
    fn unknown_flag_bits_are_ignored() {
        assert_eq!(
            BundleClass::decode(&[0x82, 0x05, 0x03]),
            Ok(BundleClass { priority: Priority(5), unique_seq: true })
        );
        assert_eq!(
            BundleClass::decode(&[0x82, 0x05, 0x02]),
            Ok(BundleClass { priority: Priority(5), unique_seq: false })
        );
        let big_flags = [0x82, 0x05, 0x1b, 0x80, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(BundleClass::decode(&big_flags).map(|c| c.unique_seq), Ok(false));
    }

    #[test]
    fn non_canonical_and_out_of_range_inputs_are_refused() {
        let bad: [(&str, &[u8]); 9] = [
            ("long head", &[0x82, 0x18, 0xc8, 0x18, 0x01]),
            ("long array head", &[0x98, 0x02, 0x18, 0xc8, 0x01]),
            ("indefinite array", &[0x9f, 0x18, 0xc8, 0x01, 0xff]),
            ("priority 256", &[0x82, 0x19, 0x01, 0x00, 0x01]),
            ("three items", &[0x83, 0x01, 0x01, 0x01]),
            ("trailing byte", &[0x82, 0x01, 0x01, 0x00]),
            ("truncated", &[0x82, 0x01]),
            ("empty", &[]),
            ("not an array", &[0x01]),
        ];
        for (why, b) in bad {
            assert!(matches!(BundleClass::decode(b), Err(ProtoError::Malformed { .. })), "{why}");
        }
        // EIDs too must be canonical: a chunked dtn SSP and an indefinite ipn SSP are refused.
        assert!(CustodyRequest::decode(&[0x81, 0x82, 0x01, 0x7f, 0x64, b'/', b'/', b'a', b'/', 0xff]).is_err());
        assert!(CustodyRequest::decode(&[0x81, 0x82, 0x02, 0x9f, 0x05, 0x00, 0xff]).is_err());
        // A custodian no signal can reach.
        assert!(CustodyRequest::decode(&[0x81, 0x82, 0x01, 0x00]).is_err());
        assert!(CustodyRequest::decode(&CustodyRequest { custodian: Eid::ipn(0xffff_ffff, 0) }.encode()).is_err());
        // Copies: 0, beyond u32, long head.
        for b in [&[0x00][..], &[0x1b, 0, 0, 0, 1, 0, 0, 0, 0], &[0x18, 0x08], &[0x08, 0x00], &[0x40]] {
            assert!(decode_copies(b).is_err(), "{b:02x?}");
        }
        // A summary in a non-canonical spelling (a two-byte varint for 0 sources).
        assert!(Receipts::decode(&[0x83, 0x01, 0x43, 0x01, 0x80, 0x00, 0xf6]).is_err());
        assert!(Receipts::decode(&[0x83, 0x01, 0x42, 0x01, 0x00, 0xf6]).is_ok());
        // The signature must be null or a byte string.
        assert!(Receipts::decode(&[0x83, 0x01, 0x42, 0x01, 0x00, 0xf4]).is_err());
        assert!(Receipts::decode(&[0x83, 0x01, 0x42, 0x01, 0x00, 0x61, b'a']).is_err());
    }

    #[test]
    fn versions_are_checked_before_shape() {
        assert_eq!(
            Receipts::decode(&[0x82, 0x02, 0x00]),
            Err(ProtoError::UnsupportedVersion { what: "receipts", version: 2, supported: 1 })
        );
        assert!(matches!(Hello::decode(&[0x81, 0x09]), Err(ProtoError::UnsupportedVersion { version: 9, .. })));
        assert!(matches!(Receipts::decode(&[0x82, 0x01, 0x00]), Err(ProtoError::Malformed { .. })));
    }

    #[test]
    fn lists_are_capped_before_reading() {
        // [0, 0, <100 001 IDs>, …]: refused on the count, with nothing behind it.
        let too_many = [0x84, 0x00, 0x00, 0x9a, 0x00, 0x01, 0x86, 0xa1];
        assert!(matches!(
            CustodySignal::decode(&too_many),
            Err(ProtoError::TooMany { count: 100_001, limit: MAX_IDS, .. })
        ));
        // A count within the cap but beyond what the input can hold is refused before any allocation.
        let within = [0x84, 0x00, 0x00, 0x9a, 0x00, 0x01, 0x86, 0xa0, 0xf6];
        assert!(matches!(CustodySignal::decode(&within), Err(ProtoError::Malformed { .. })));
        // Endpoints.
        let mut h = vec![0x87, 0x01, 0x82, 0x02, 0x82, 0x05, 0x00, 0x99, 0x04, 0x01];
        h.extend_from_slice(&[0; 64]);
        assert!(matches!(Hello::decode(&h), Err(ProtoError::TooMany { count: 1025, .. })));
    }

    #[test]
    fn maximum_ids_decode() {
        let s = CustodySignal {
            disposition: Disposition::Accepted,
            time: DtnTime(1),
            ids: (0..MAX_IDS as u64).map(|q| id(Eid::ipn(9, 1), 0, q, None)).collect(),
            signature: None,
        };
        assert_eq!(CustodySignal::decode(&s.encode()).map(|d| d.ids.len()), Ok(MAX_IDS));
    }

    #[test]
    fn signed_bytes_cover_everything_but_the_signature() {
        let base = signal();
        let payload = OurRecord::from(base.clone()).to_admin_payload();
        assert!(payload.starts_with(&base.signed_bytes()));

        let signed = CustodySignal { signature: Some(vec![0x55; 64]), ..base.clone() };
        assert_eq!(signed.signed_bytes(), base.signed_bytes());
        let signed_payload = OurRecord::from(signed.clone()).to_admin_payload();
        assert!(signed_payload.starts_with(&signed.signed_bytes()));
        // What was signed is exactly what the receiver reconstructs from the decoded record.
        let rec = OurRecord::from_admin(&AdminRecord::decode(&signed_payload).unwrap()).unwrap().unwrap();
        assert_eq!(rec.signed_bytes(), signed.signed_bytes());
        assert_eq!(rec.signature(), Some(&[0x55; 64][..]));

        for changed in [
            CustodySignal { ids: vec![id(Eid::ipn(3, 1), 700, 3, None)], ..base.clone() },
            CustodySignal { ids: vec![], ..base.clone() },
            CustodySignal { time: DtnTime(1001), ..base.clone() },
            CustodySignal { disposition: Disposition::Accepted, ..base.clone() },
        ] {
            assert_ne!(changed.signed_bytes(), base.signed_bytes());
        }

        let h = empty_hello();
        assert_eq!(h.signed_bytes(), Hello { signature: None, ..h.clone() }.signed_bytes());
        let mut more = h.clone();
        more.delivered.insert(&id(Eid::ipn(3, 1), 0, 0, None), SeqMode::PerTime);
        assert_ne!(more.signed_bytes(), h.signed_bytes());
        assert_ne!(Hello { routing: vec![1], ..h.clone() }.signed_bytes(), h.signed_bytes());

        // The record type is signed: equal contents under two types give different signed bytes.
        let r = Receipts { delivered: Summary::new(), signature: None };
        assert_eq!(r.signed_bytes()[..6], [0x82, 0x1a, 0x00, 0x01, 0x00, 0x03]);
        assert_ne!(r.signed_bytes()[..6], base.signed_bytes()[..6]);
    }

    #[test]
    fn admin_records_that_are_not_ours() {
        let report = AdminRecord::StatusReport(StatusReport {
            received: StatusAssertion { asserted: true, time: None },
            forwarded: StatusAssertion::default(),
            delivered: StatusAssertion::default(),
            deleted: StatusAssertion::default(),
            reason: 0,
            source: Eid::ipn(1, 0),
            creation: CreationTimestamp::new(1, 0),
            fragment: None,
        });
        assert_eq!(OurRecord::from_admin(&report), Ok(None));
        let foreign = AdminRecord::Other { record_type: 70_000, content: vec![0x00] };
        assert_eq!(OurRecord::from_admin(&foreign), Ok(None));
        let broken = AdminRecord::Other { record_type: HELLO_RECORD, content: vec![0x00] };
        assert!(OurRecord::from_admin(&broken).is_err());
        for rec in [
            OurRecord::from(signal()),
            OurRecord::from(empty_hello()),
            OurRecord::from(Receipts { delivered: Summary::new(), signature: None }),
        ] {
            let back = OurRecord::from_admin(&AdminRecord::decode(&rec.to_admin_payload()).unwrap());
            assert_eq!(back, Ok(Some(rec)));
        }
    }

    #[test]
    fn blocks_read_from_bundles() {
        let class = BundleClass { priority: Priority::EXPEDITED, unique_seq: true };
        let custody = CustodyRequest { custodian: Eid::dtn("relay", "").unwrap() };
        let builder = || BundleBuilder::new(Eid::ipn(1, 1), Eid::ipn(2, 1)).payload(b"x".to_vec());
        let rep = BlockFlags::REPLICATE_IN_FRAGMENTS;
        let b = builder()
            .extension_block(BUNDLE_CLASS_BLOCK, rep, class.encode())
            .extension_block(CUSTODY_REQUEST_BLOCK, rep, custody.encode())
            .extension_block(SPRAY_COPIES_BLOCK, rep, encode_copies(4))
            .build()
            .unwrap();
        let bytes = b.to_vec();
        let b = Bundle::decode(&bytes).unwrap();
        assert_eq!(BundleClass::of(&b), Ok(Some(class)));
        assert_eq!(CustodyRequest::of(&b), Ok(Some(custody)));
        assert_eq!(copies_of(&b), Ok(Some(4)));

        let plain = builder().build().unwrap();
        assert_eq!(BundleClass::of(&plain), Ok(None));
        assert_eq!(CustodyRequest::of(&plain), Ok(None));
        assert_eq!(copies_of(&plain), Ok(None));

        let twice = builder()
            .extension_block(SPRAY_COPIES_BLOCK, rep, encode_copies(4))
            .extension_block(SPRAY_COPIES_BLOCK, rep, encode_copies(4))
            .build()
            .unwrap();
        assert!(matches!(copies_of(&twice), Err(ProtoError::DuplicateBlock { .. })));
        let broken = builder().extension_block(BUNDLE_CLASS_BLOCK, rep, vec![0x00]).build().unwrap();
        assert!(matches!(BundleClass::of(&broken), Err(ProtoError::Malformed { .. })));
    }

    #[test]
    fn errors_say_what_and_where() {
        let e = BundleClass::decode(&[0x82, 0x19, 0x01, 0x00, 0x01]).unwrap_err();
        assert_eq!(e.to_string(), "malformed bundle-class block: byte 1: priority 256 is above 255");
        let e = CustodySignal::decode(&[0x84, 0x00, 0x18, 0x00]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "malformed custody signal: byte 2: the signal time is not in canonical form \
             (definite length, shortest head)"
        );
    }

    // ---- properties --------------------------------------------------------------------------------------

    fn node_eid() -> impl Strategy<Value = Eid> {
        prop_oneof![
            (1u64..0xffff_fffe, any::<u64>()).prop_map(|(n, s)| Eid::ipn(n, s)),
            (1u64..0xffff_fffe, any::<u64>()).prop_map(|(n, s)| Eid::Ipn(IpnEid {
                fqnn: n,
                service: s,
                form: IpnForm::ThreeElement
            })),
            ("[a-z0-9.-]{1,20}", "[!-~]{0,12}").prop_map(|(n, d)| Eid::dtn(&n, &d).unwrap()),
        ]
    }

    fn any_eid() -> impl Strategy<Value = Eid> {
        prop_oneof![1 => Just(Eid::Null), 6 => node_eid()]
    }

    fn bundle_id() -> impl Strategy<Value = BundleId> {
        (any_eid(), any::<u64>(), any::<u64>(), proptest::option::of((any::<u64>(), any::<u64>())))
            .prop_map(|(s, t, q, f)| id(s, t, q, f))
    }

    fn summary() -> impl Strategy<Value = Summary> {
        proptest::collection::vec((bundle_id(), any::<bool>()), 0..12).prop_map(|ids| {
            let mut s = Summary::new();
            for (id, unique) in ids {
                s.insert(&id, if unique { SeqMode::Unique } else { SeqMode::PerTime });
            }
            s
        })
    }

    fn signature() -> impl Strategy<Value = Option<Vec<u8>>> {
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..80))
    }

    fn disposition() -> impl Strategy<Value = Disposition> {
        any::<u64>().prop_map(Disposition::from_code)
    }

    fn custody_signal() -> impl Strategy<Value = CustodySignal> {
        (disposition(), any::<u64>(), proptest::collection::vec(bundle_id(), 0..20), signature()).prop_map(
            |(disposition, t, ids, signature)| CustodySignal { disposition, time: DtnTime(t), ids, signature },
        )
    }

    fn hello() -> impl Strategy<Value = Hello> {
        (
            node_eid(),
            proptest::collection::vec(node_eid(), 0..5),
            summary(),
            summary(),
            proptest::collection::vec(any::<u8>(), 0..40),
            signature(),
        )
            .prop_map(|(node, endpoints, held, delivered, routing, signature)| Hello {
                node,
                endpoints,
                held,
                delivered,
                routing,
                signature,
            })
    }

    fn receipts() -> impl Strategy<Value = Receipts> {
        (summary(), signature()).prop_map(|(delivered, signature)| Receipts { delivered, signature })
    }

    fn offer() -> impl Strategy<Value = Offer> {
        (summary(), summary(), signature()).prop_map(|(held, wanted, signature)| Offer { held, wanted, signature })
    }

    /// Every decoder on the same bytes: none may panic, and whatever one accepts re-encodes to the input
    /// exactly (the bundle class up to its ignored flag bits).
    fn all_decoders(data: &[u8]) {
        if let Ok(c) = BundleClass::decode(data) {
            assert_eq!(BundleClass::decode(&c.encode()), Ok(c));
        }
        if let Ok(r) = CustodyRequest::decode(data) {
            assert_eq!(r.encode(), data);
        }
        if let Ok(n) = decode_copies(data) {
            assert_eq!(encode_copies(n), data);
        }
        if let Ok(s) = CustodySignal::decode(data) {
            assert_eq!(s.encode(), data);
        }
        if let Ok(h) = Hello::decode(data) {
            assert_eq!(h.encode(), data);
        }
        if let Ok(r) = Receipts::decode(data) {
            assert_eq!(r.encode(), data);
        }
        if let Ok(o) = Offer::decode(data) {
            assert_eq!(o.encode(), data);
        }
        if let Ok(rec) = AdminRecord::decode(data)
            && let Ok(Some(ours)) = OurRecord::from_admin(&rec)
        {
            assert!(ours.to_admin_payload().starts_with(&ours.signed_bytes()));
        }
    }

    proptest! {
        #[test]
        fn bundle_class_roundtrip(p in any::<u8>(), unique in any::<bool>()) {
            let c = BundleClass { priority: Priority(p), unique_seq: unique };
            prop_assert_eq!(BundleClass::decode(&c.encode()), Ok(c));
        }

        #[test]
        fn custody_request_roundtrip(custodian in node_eid()) {
            let r = CustodyRequest { custodian };
            prop_assert_eq!(CustodyRequest::decode(&r.encode()), Ok(r));
        }

        #[test]
        fn copies_roundtrip(n in 1u32..) {
            prop_assert_eq!(decode_copies(&encode_copies(n)), Ok(n));
        }

        #[test]
        fn custody_signal_roundtrip(s in custody_signal()) {
            let bytes = s.encode();
            prop_assert_eq!(CustodySignal::decode(&bytes), Ok(s.clone()));
            let rec = OurRecord::from(s);
            let payload = rec.to_admin_payload();
            prop_assert!(payload.starts_with(&rec.signed_bytes()));
            prop_assert_eq!(OurRecord::from_admin(&AdminRecord::decode(&payload).unwrap()), Ok(Some(rec)));
            // Every proper prefix is an error, never a panic or a shorter signal.
            for cut in 0..bytes.len() {
                prop_assert!(CustodySignal::decode(&bytes[..cut]).is_err());
            }
        }

        #[test]
        fn hello_roundtrip(h in hello()) {
            let bytes = h.encode();
            prop_assert_eq!(Hello::decode(&bytes), Ok(h.clone()));
            let rec = OurRecord::from(h);
            let payload = rec.to_admin_payload();
            prop_assert!(payload.starts_with(&rec.signed_bytes()));
            prop_assert_eq!(OurRecord::from_admin(&AdminRecord::decode(&payload).unwrap()), Ok(Some(rec)));
        }

        #[test]
        fn hello_against_the_receivers_delivered_summary(h in hello(), other in hello()) {
            let bytes = h.encode();
            // The receiver's own summary, byte for byte: not decoded, reported as the same.
            let ours = h.delivered.to_bytes();
            let (got, same) = Hello::decode_against(&bytes, Some(&ours)).unwrap();
            prop_assert!(same);
            prop_assert_eq!(got, Hello { delivered: Summary::new(), ..h.clone() });
            // Any other: decoded as ever.
            let theirs = other.delivered.to_bytes();
            if theirs != ours {
                prop_assert_eq!(Hello::decode_against(&bytes, Some(&theirs)), Ok((h.clone(), false)));
            }
            // Malformed input is refused whatever the receiver holds.
            prop_assert!(Hello::decode_against(&bytes[..bytes.len() - 1], Some(&ours)).is_err());
        }

        #[test]
        fn hello_from_encoded_summaries(h in hello()) {
            let h = Hello { signature: None, ..h };
            let payload = Hello::admin_payload_unsigned(
                &h.node, &h.endpoints, &h.held.to_bytes(), &h.delivered.to_bytes(), &h.routing);
            prop_assert_eq!(payload, OurRecord::from(h).to_admin_payload());
        }

        #[test]
        fn receipts_roundtrip(r in receipts()) {
            prop_assert_eq!(Receipts::decode(&r.encode()), Ok(r.clone()));
            let rec = OurRecord::from(r);
            let back = OurRecord::from_admin(&AdminRecord::decode(&rec.to_admin_payload()).unwrap());
            prop_assert_eq!(back, Ok(Some(rec)));
        }

        #[test]
        fn offer_roundtrip(o in offer()) {
            let bytes = o.encode();
            prop_assert_eq!(Offer::decode(&bytes), Ok(o.clone()));
            let rec = OurRecord::from(o);
            let payload = rec.to_admin_payload();
            prop_assert!(payload.starts_with(&rec.signed_bytes()));
            prop_assert_eq!(OurRecord::from_admin(&AdminRecord::decode(&payload).unwrap()), Ok(Some(rec)));
            for cut in 0..bytes.len() {
                prop_assert!(Offer::decode(&bytes[..cut]).is_err());
            }
        }

        #[test]
        fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..256)) {
            all_decoders(&data);
        }

        /// Garbage that starts like each format gets further into the decoders than uniform bytes do.
        #[test]
        fn mutated_records_never_panic(
            which in 0usize..7,
            s in custody_signal(),
            h in hello(),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut data = match which {
                0 => s.encode(),
                1 => h.encode(),
                2 => Receipts { delivered: h.held.clone(), signature: None }.encode(),
                3 => OurRecord::from(s).to_admin_payload(),
                4 => CustodyRequest { custodian: h.node.clone() }.encode(),
                5 => Offer { held: h.held.clone(), wanted: h.delivered.clone(), signature: None }.encode(),
                _ => BundleClass { priority: Priority(7), unique_seq: true }.encode(),
            };
            for (at, byte) in flips {
                let i = at.index(data.len());
                data[i] = byte;
            }
            data.truncate(cut.index(data.len() + 1));
            all_decoders(&data);
        }
    }
}
