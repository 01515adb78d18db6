//! Property tests of the frame decoder: arbitrary bytes never panic, never
//! allocate past the frame limit and always terminate; valid frames round-trip;
//! bad frames cost only themselves; a cut stream is an error, not a hang.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use a3s_box_core::guest::message::{
    BootSpec, ContainerOp, ContainerSpec, GuestMessage, HostMessage, Message, ProcessSpec,
    RootImage, RootSpec, WallClock, WindowSize,
};
use a3s_box_core::guest::{
    Frame, FrameError, StdStream, FRAME_HEADER_BYTES, MAX_DATA_CHUNK_BYTES, MAX_FRAME_PAYLOAD_BYTES,
};
use proptest::prelude::*;

// ---------------------------------------------------------------------------
// The largest single allocation made by this thread while tracking is on.

struct TrackingAlloc;

thread_local! {
    static TRACKING: Cell<bool> = const { Cell::new(false) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    // `try_with`: the thread may be tearing down its locals.
    let _ = TRACKING.try_with(|on| {
        if on.get() {
            let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
        }
    });
}

// SAFETY: every call is forwarded unchanged to the system allocator; the
// bookkeeping only touches const-initialised thread locals without
// destructors, which never allocate.
unsafe impl GlobalAlloc for TrackingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: the caller meets `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: the caller meets `GlobalAlloc::alloc_zeroed`'s contract.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: the caller meets `GlobalAlloc::realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller meets `GlobalAlloc::dealloc`'s contract.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: TrackingAlloc = TrackingAlloc;

/// Run `f`, returning its result and the largest allocation it made.
fn largest_allocation<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST.with(|l| l.set(0));
    TRACKING.with(|t| t.set(true));
    let out = f();
    TRACKING.with(|t| t.set(false));
    (out, LARGEST.with(Cell::get))
}

// ---------------------------------------------------------------------------
// Readers and raw frames.

/// Hands out at most a few bytes per read and sometimes `Interrupted`, as a
/// pipe or socket may.
struct Trickle<'a> {
    bytes: &'a [u8],
    steps: Vec<u8>,
    turn: usize,
}

impl<'a> Trickle<'a> {
    fn new(bytes: &'a [u8], steps: Vec<u8>) -> Self {
        Trickle {
            bytes,
            steps,
            turn: 0,
        }
    }
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let step = self.steps.get(self.turn % self.steps.len().max(1)).copied();
        self.turn += 1;
        match step {
            Some(0) => Err(io::ErrorKind::Interrupted.into()),
            Some(n) => {
                let n = (n as usize).min(buf.len());
                self.bytes.read(&mut buf[..n])
            }
            None => self.bytes.read(buf),
        }
    }
}

fn header(len: usize, kind: u8, process: u32, stream: u8) -> [u8; FRAME_HEADER_BYTES] {
    let mut h = [0u8; FRAME_HEADER_BYTES];
    h[..4].copy_from_slice(&(len as u32).to_le_bytes());
    h[4] = kind;
    h[5..9].copy_from_slice(&process.to_le_bytes());
    h[9] = stream;
    h
}

/// A frame with a correct length prefix and an arbitrary header and payload.
fn raw(kind: u8, process: u32, stream: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = header(
        payload.len() + FRAME_HEADER_BYTES - 4,
        kind,
        process,
        stream,
    )
    .to_vec();
    out.extend_from_slice(payload);
    out
}

fn encode(frame: &Frame) -> Vec<u8> {
    let mut out = Vec::new();
    frame.encode(&mut out).expect("valid frame");
    out
}

/// Cheap pseudo-random bytes (a big `Vec<u8>` strategy is slow to generate).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Strategies.

fn text() -> impl Strategy<Value = String> {
    ".{0,12}"
}

fn stream() -> impl Strategy<Value = StdStream> {
    prop_oneof![
        Just(StdStream::Stdin),
        Just(StdStream::Stdout),
        Just(StdStream::Stderr)
    ]
}

fn window() -> impl Strategy<Value = WindowSize> {
    (any::<u16>(), any::<u16>()).prop_map(|(rows, cols)| WindowSize { rows, cols })
}

fn process_spec() -> impl Strategy<Value = ProcessSpec> {
    (
        (any::<u32>(), text(), prop::collection::vec(text(), 0..3)),
        prop::collection::vec((text(), text()), 0..3),
        (text(), prop::option::of(text()), any::<bool>()),
        (
            prop::option::of(window()),
            any::<bool>(),
            prop::option::of(text()),
        ),
    )
        .prop_map(
            |(
                (process, executable, args),
                env,
                (workdir, user, stdin),
                (terminal, builtin, container),
            )| {
                ProcessSpec {
                    process,
                    container,
                    executable,
                    args,
                    env,
                    workdir,
                    user,
                    stdin,
                    terminal,
                    builtin,
                }
            },
        )
}

fn container_spec() -> impl Strategy<Value = ContainerSpec> {
    (text(), text(), text(), text(), any::<bool>()).prop_map(
        |(id, hostname, path, fstype, shared)| {
            let image = match shared {
                true => RootImage::SharedFile {
                    tag: id.clone(),
                    path,
                },
                false => RootImage::Device { path },
            };
            ContainerSpec {
                id,
                hostname,
                root: RootSpec { image, fstype },
                storage: None,
                limits: None,
                workdir: None,
            }
        },
    )
}

fn host_message() -> impl Strategy<Value = HostMessage> {
    prop_oneof![
        (
            text(),
            any::<(i64, u32)>(),
            prop::collection::vec(any::<u8>(), 0..40),
            prop::option::of(container_spec()),
            prop::option::of(process_spec()),
        )
            .prop_map(|(sandbox, (secs, nanos), entropy, container, main)| {
                HostMessage::Boot(BootSpec {
                    sandbox,
                    clock: Some(WallClock { secs, nanos }),
                    entropy,
                    network: None,
                    container: container.map(Box::new),
                    main: main.map(Box::new),
                })
            }),
        container_spec().prop_map(HostMessage::CreateContainer),
        process_spec().prop_map(HostMessage::Start),
        (text(), any::<bool>())
            .prop_map(|(container, discard)| HostMessage::RemoveContainer { container, discard }),
        (any::<u32>(), any::<i32>())
            .prop_map(|(process, signal)| HostMessage::Signal { process, signal }),
        process_spec().prop_map(HostMessage::Exec),
        (any::<u32>(), window()).prop_map(|(process, size)| HostMessage::Resize { process, size }),
        Just(HostMessage::Shutdown),
    ]
}

fn guest_message() -> impl Strategy<Value = GuestMessage> {
    prop_oneof![
        (any::<u32>(), text())
            .prop_map(|(version, kernel)| GuestMessage::Hello { version, kernel }),
        (any::<u32>(), any::<u32>())
            .prop_map(|(process, pid)| GuestMessage::Started { process, pid }),
        (any::<u32>(), any::<i32>(), text()).prop_map(|(process, exit_code, reason)| {
            GuestMessage::SpawnFailed {
                process,
                exit_code,
                reason,
            }
        }),
        (any::<u32>(), any::<i32>())
            .prop_map(|(process, exit_code)| GuestMessage::Exited { process, exit_code }),
        text().prop_map(|reason| GuestMessage::Fatal { reason }),
        text().prop_map(|container| GuestMessage::ContainerCreated { container }),
        text().prop_map(|container| GuestMessage::ContainerRemoved { container }),
        (text(), any::<bool>(), text()).prop_map(|(container, create, reason)| {
            GuestMessage::ContainerFailed {
                container,
                op: if create {
                    ContainerOp::Create
                } else {
                    ContainerOp::Remove
                },
                reason,
            }
        }),
    ]
}

fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => prop::collection::vec(any::<u8>(), 0..64),
        1 => (0..=MAX_DATA_CHUNK_BYTES, any::<u64>()).prop_map(|(len, seed)| noise(len, seed)),
    ]
}

/// Any valid frame.
fn frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        host_message().prop_map(|m| Frame::Control(Message::Host(m))),
        guest_message().prop_map(|m| Frame::Control(Message::Guest(m))),
        (any::<u32>(), stream(), payload()).prop_map(|(process, stream, bytes)| Frame::Data {
            process,
            stream,
            bytes
        }),
        (any::<u32>(), stream()).prop_map(|(process, stream)| Frame::Eof { process, stream }),
        (any::<u32>(), stream(), any::<u32>()).prop_map(|(process, stream, bytes)| {
            Frame::Credit {
                process,
                stream,
                bytes,
            }
        }),
    ]
}

/// What a bad frame must decode to.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Refusal {
    TooLarge,
    BadKind,
    BadStream,
    Malformed,
    BadMessage,
}

fn refusal(e: &FrameError) -> Option<Refusal> {
    match e {
        FrameError::TooLarge { .. } => Some(Refusal::TooLarge),
        FrameError::BadKind { .. } => Some(Refusal::BadKind),
        FrameError::BadStream { .. } => Some(Refusal::BadStream),
        FrameError::Malformed { .. } => Some(Refusal::Malformed),
        FrameError::BadMessage(_) => Some(Refusal::BadMessage),
        _ => None,
    }
}

/// A complete frame that must be refused without losing sync: its bytes,
/// the refusal, and the process the error must name.
#[derive(Debug, Clone)]
struct Bad {
    bytes: Vec<u8>,
    refusal: Refusal,
    process: Option<u32>,
}

fn small() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..24)
}

fn bad_frame() -> impl Strategy<Value = Bad> {
    let bad_kind = (4u8..=255, any::<u32>(), any::<u8>(), small()).prop_map(|(k, p, s, b)| Bad {
        bytes: raw(k, p, s, &b),
        refusal: Refusal::BadKind,
        process: Some(p),
    });
    let bad_stream = (1u8..=3, any::<u32>(), 3u8..=255, small()).prop_map(|(k, p, s, b)| Bad {
        bytes: raw(k, p, s, &b),
        refusal: Refusal::BadStream,
        process: Some(p),
    });
    let bad_credit = (
        any::<u32>(),
        0u8..=2,
        small().prop_filter("not 4 bytes", |b| b.len() != 4),
    )
        .prop_map(|(p, s, b)| Bad {
            bytes: raw(3, p, s, &b),
            refusal: Refusal::Malformed,
            process: Some(p),
        });
    let bad_eof = (
        any::<u32>(),
        0u8..=2,
        prop::collection::vec(any::<u8>(), 1..24),
    )
        .prop_map(|(p, s, b)| Bad {
            bytes: raw(2, p, s, &b),
            refusal: Refusal::Malformed,
            process: Some(p),
        });
    let json = prop_oneof![
        small(),
        Just(br#"{"host":{"type":"reboot"}}"#.to_vec()),
        Just(br#"{"guest":{"type":"exited","process":1}}"#.to_vec()),
        Just(b"null".to_vec()),
    ]
    .prop_filter("not a message", |b| {
        serde_json::from_slice::<Message>(b).is_err()
    });
    let bad_message = (any::<u32>(), any::<u8>(), json).prop_map(|(p, s, b)| Bad {
        bytes: raw(0, p, s, &b),
        refusal: Refusal::BadMessage,
        process: None,
    });
    let too_large = (
        0u8..=6,
        any::<u32>(),
        any::<u8>(),
        1..=64 * 1024usize,
        any::<u64>(),
    )
        .prop_map(|(k, p, s, over, seed)| Bad {
            bytes: raw(k, p, s, &noise(MAX_FRAME_PAYLOAD_BYTES + over, seed)),
            refusal: Refusal::TooLarge,
            process: (k != 0).then_some(p),
        });
    prop_oneof![
        3 => bad_kind,
        3 => bad_stream,
        3 => bad_credit,
        3 => bad_eof,
        3 => bad_message,
        1 => too_large,
    ]
}

#[derive(Debug, Clone)]
enum Item {
    Good(Frame),
    Bad(Bad),
}

fn item() -> impl Strategy<Value = Item> {
    prop_oneof![
        frame().prop_map(Item::Good),
        bad_frame().prop_map(Item::Bad)
    ]
}

fn wire_of(items: &[Item]) -> (Vec<u8>, Vec<usize>) {
    let mut wire = Vec::new();
    let mut ends = Vec::new();
    for item in items {
        match item {
            Item::Good(frame) => frame.encode(&mut wire).expect("valid frame"),
            Item::Bad(bad) => wire.extend_from_slice(&bad.bytes),
        }
        ends.push(wire.len());
    }
    (wire, ends)
}

/// Check one read against what `item` must give.
fn expect(item: &Item, got: Result<Option<Frame>, FrameError>) -> Result<(), TestCaseError> {
    match (item, got) {
        (Item::Good(want), Ok(Some(frame))) => prop_assert_eq!(&frame, want),
        (Item::Bad(bad), Err(e)) => {
            prop_assert!(e.is_recoverable(), "{}", e);
            prop_assert_eq!(refusal(&e), Some(bad.refusal), "{}", e);
            prop_assert_eq!(e.process(), bad.process, "{}", e);
        }
        (item, got) => prop_assert!(false, "expected {:?}, got {:?}", item, got),
    }
    Ok(())
}

/// Header-shaped noise: lengths near every boundary, kinds and streams
/// around the valid ones, bodies that may not match the declared length.
fn hostile_chunk() -> impl Strategy<Value = Vec<u8>> {
    let len = prop_oneof![
        0..16usize,
        16..512usize,
        (MAX_FRAME_PAYLOAD_BYTES - 8)..(MAX_FRAME_PAYLOAD_BYTES + 16),
        any::<u32>().prop_map(|l| l as usize),
    ];
    (len, 0u8..=5, any::<u32>(), 0u8..=4, small()).prop_map(|(len, kind, process, stream, body)| {
        let mut out = header(len, kind, process, stream).to_vec();
        out.extend_from_slice(&body);
        out
    })
}

fn hostile_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        prop::collection::vec(hostile_chunk(), 0..6).prop_map(|c| c.concat()),
    ]
}

/// Read sizes for [`Trickle`]; 0 is `Interrupted`. The last is never 0, so
/// reads always make progress.
fn steps() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(0u8..=16, 0..8).prop_map(|mut s| {
        s.push(16);
        s
    })
}

// ---------------------------------------------------------------------------
// Properties.

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// (a) Arbitrary bytes: no panic, no allocation past the frame limit,
    /// and every read either consumes bytes or ends the loop.
    #[test]
    fn arbitrary_bytes_never_panic_and_always_end(bytes in hostile_bytes(), steps in steps()) {
        let mut r = Trickle::new(&bytes, steps);
        for _ in 0..=bytes.len() {
            let before = r.bytes.len();
            let (got, largest) = largest_allocation(|| Frame::read_from(&mut r));
            prop_assert!(largest <= MAX_FRAME_PAYLOAD_BYTES, "allocated {} bytes", largest);
            match got {
                Ok(None) => {
                    prop_assert!(r.bytes.is_empty());
                    return Ok(());
                }
                Err(e) if !e.is_recoverable() => return Ok(()),
                Ok(Some(_)) | Err(_) => prop_assert!(r.bytes.len() < before, "read consumed nothing"),
            }
        }
        prop_assert!(false, "more reads than bytes");
    }

    /// (b) Every valid frame round-trips, alone and in sequence.
    #[test]
    fn valid_frames_round_trip(frames in prop::collection::vec(frame(), 1..6), steps in steps()) {
        let wire: Vec<u8> = frames.iter().flat_map(encode).collect();
        let mut r = Trickle::new(&wire, steps);
        for frame in &frames {
            prop_assert_eq!(&Frame::read_from(&mut r).unwrap(), &Some(frame.clone()));
        }
        prop_assert!(Frame::read_from(&mut r).unwrap().is_none());
    }

    /// (c) Bad frames interleaved with good ones: each bad one is a
    /// recoverable error naming its process; every good one still decodes.
    #[test]
    fn bad_frames_cost_only_themselves(items in prop::collection::vec(item(), 1..12), steps in steps()) {
        let (wire, _) = wire_of(&items);
        let mut r = Trickle::new(&wire, steps);
        for item in &items {
            expect(item, Frame::read_from(&mut r))?;
        }
        prop_assert!(Frame::read_from(&mut r).unwrap().is_none());
    }

    /// (d) A stream cut anywhere: whole frames before the cut decode as
    /// usual, then a clean end (cut on a boundary) or a fatal error.
    #[test]
    fn a_cut_stream_is_an_error_not_a_hang(
        items in prop::collection::vec(item(), 1..6),
        at in any::<prop::sample::Index>(),
        steps in steps(),
    ) {
        let (wire, ends) = wire_of(&items);
        let cut = at.index(wire.len());
        let mut r = Trickle::new(&wire[..cut], steps);
        let whole = ends.iter().take_while(|end| **end <= cut).count();
        for item in &items[..whole] {
            expect(item, Frame::read_from(&mut r))?;
        }
        match Frame::read_from(&mut r) {
            Ok(None) => prop_assert!(cut == 0 || ends.contains(&cut), "clean end at {}", cut),
            Err(e) => prop_assert!(!e.is_recoverable(), "{}", e),
            Ok(Some(frame)) => prop_assert!(false, "read {:?} past the cut", frame),
        }
    }
}

// ---------------------------------------------------------------------------
// Fixed cases the properties cannot reach cheaply.

#[test]
fn a_payload_at_the_cap_is_skipped_through_a_small_buffer() {
    const CAP: usize = 64 * 1024 * 1024;
    let next = encode(&Frame::Eof {
        process: 2,
        stream: StdStream::Stdout,
    });
    let mut r = io::Cursor::new(header(CAP + FRAME_HEADER_BYTES - 4, 1, 1, 1))
        .chain(io::repeat(0x5a).take(CAP as u64))
        .chain(next.as_slice());
    let (got, largest) = largest_allocation(|| Frame::read_from(&mut r));
    let err = got.unwrap_err();
    assert!(
        matches!(
            err,
            FrameError::TooLarge {
                payload_len: CAP,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(err.process(), Some(1));
    assert!(largest < 64 * 1024, "skipping allocated {largest} bytes");
    assert!(matches!(
        Frame::read_from(&mut r).unwrap(),
        Some(Frame::Eof { process: 2, .. })
    ));

    let mut r = io::Cursor::new(header(CAP + FRAME_HEADER_BYTES - 3, 1, 1, 1)).chain(io::repeat(0));
    let err = Frame::read_from(&mut r).unwrap_err();
    assert!(matches!(err, FrameError::TooLargeToSkip(_)), "{err}");
    assert!(!err.is_recoverable());
}

#[test]
fn a_socket_closed_mid_frame_is_an_error_not_a_hang() {
    let frame = encode(&Frame::Data {
        process: 1,
        stream: StdStream::Stdout,
        bytes: vec![1; 1000],
    });
    let oversized = raw(1, 1, 1, &[0; MAX_FRAME_PAYLOAD_BYTES + 1000]);
    for (wire, cut) in [
        (&frame, 3),
        (&frame, FRAME_HEADER_BYTES),
        (&frame, 500),
        (&oversized, oversized.len() - 1),
    ] {
        let (mut ours, mut theirs) = UnixStream::pair().unwrap();
        ours.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let part = wire[..cut].to_vec();
        let writer = std::thread::spawn(move || theirs.write_all(&part));
        let err = Frame::read_from(&mut ours).unwrap_err();
        assert!(
            matches!(&err, FrameError::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof),
            "cut at {cut}: {err}"
        );
        writer.join().unwrap().unwrap();
    }
}
