//! Which Polaroid handle an Arrow Flight ticket or descriptor names: the one reading of
//! them that workers (which answer the call) and coordinators (which route it) share.

use std::fmt;

use crate::flight::{FlightDescriptor, Ticket, flight_descriptor::DescriptorType};

/// Why a ticket or descriptor names no handle; each message is for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotAHandle {
    TicketNotUtf8,
    PathLength(usize),
    CommandNotUtf8,
    UnknownType,
}

impl fmt::Display for NotAHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TicketNotUtf8 => write!(f, "a Flight ticket is a Polaroid handle: UTF-8 text"),
            Self::PathLength(length) => write!(
                f,
                "a Flight descriptor path names one Polaroid handle; this one has {length} elements"
            ),
            Self::CommandNotUtf8 => write!(
                f,
                "a Flight descriptor command is a Polaroid handle: UTF-8 text"
            ),
            Self::UnknownType => write!(
                f,
                "a Flight descriptor must be a PATH of one handle or a CMD holding a handle"
            ),
        }
    }
}

impl std::error::Error for NotAHandle {}

impl Ticket {
    /// The handle this ticket carries: its UTF-8 text.
    pub fn handle(&self) -> Result<&str, NotAHandle> {
        std::str::from_utf8(&self.ticket).map_err(|_| NotAHandle::TicketNotUtf8)
    }
}

impl FlightDescriptor {
    /// The handle this descriptor names: a path of one element, or a command that is the
    /// handle's text.
    pub fn handle(&self) -> Result<&str, NotAHandle> {
        match DescriptorType::try_from(self.r#type) {
            Ok(DescriptorType::Path) => match self.path.as_slice() {
                [handle] => Ok(handle),
                path => Err(NotAHandle::PathLength(path.len())),
            },
            Ok(DescriptorType::Cmd) => {
                std::str::from_utf8(&self.cmd).map_err(|_| NotAHandle::CommandNotUtf8)
            }
            _ => Err(NotAHandle::UnknownType),
        }
    }
}
