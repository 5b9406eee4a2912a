//! Embedded BGP-4 speaker (RFC 4271), sans-IO.
//!
//! * [`wire`]: message codec (RFC 4271 §4, RFC 4760, RFC 5492, RFC 6793, RFC 2918) with
//!   RFC 7606 error handling.
//! * [`session`]: one peer's finite state machine (RFC 4271 §8). Bytes and `now` go in
//!   through `handle_*`; bytes, deadlines and events come out through `poll_*`.
//! * [`guard`]: the import guard (a neighbour speaks only for itself).
//! * [`rib`]: Adj-RIB-In, best-path selection (RFC 4271 §9.1.2), export policy.
//! * [`speaker`]: sessions and RIB glued together, the API a daemon drives.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod error;
pub mod guard;
pub mod limits;
pub mod prefix;
pub mod rib;
pub mod session;
pub mod speaker;
pub mod wire;

pub use error::{BgpError, CeaseSubcode, UpdateError, UpdateSubcode};
pub use guard::{ImportGuard, Protected, ProtectedKind, Refusal};
pub use prefix::{Action, Prefix, PrefixList, PrefixListEntry};
pub use rib::{PeerId, PeerPolicy, PeerUp, Refused, Rib, RibChange, RibConfig, Route};
pub use session::{
    resolve_collision, CollisionWinner, DownReason, Event, PeerInfo, Session, SessionConfig,
    StateName,
};
pub use speaker::{Speaker, SpeakerEvent};
