//! Backend access to granted pages.
//!
//! A backend touches guest memory only through grants (docs/abi.md §8). The VMM implements
//! [`GrantMapper`] over the guest's grant table; the backends in this crate use it without
//! knowing how mappings are made, which keeps them testable without a VM.

use parapet_abi::grant_table::{GrantRef, gntst};

use crate::shared::SharedPage;

/// Why a grant could not be mapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    /// The reference is outside the table, or its entry does not grant access to the backend
    /// (`GNTST_bad_gntref`).
    #[error("bad grant reference")]
    BadRef,
    /// The entry is read-only and a writable mapping was asked for (`GNTST_permission_denied`).
    #[error("grant does not permit writing")]
    PermissionDenied,
    /// The granted frame is outside guest RAM or may not be granted (`GNTST_bad_page`).
    #[error("granted frame may not be mapped")]
    BadPage,
    /// The guest kept changing the entry's flags while the VMM tried to mark it in use
    /// (`GNTST_general_error`).
    #[error("grant entry changed while it was being mapped")]
    Contended,
}

impl GrantError {
    /// The matching `GNTST_*` status code.
    pub fn gntst(self) -> i16 {
        match self {
            GrantError::BadRef => gntst::BAD_GNTREF,
            GrantError::PermissionDenied => gntst::PERMISSION_DENIED,
            GrantError::BadPage => gntst::BAD_PAGE,
            GrantError::Contended => gntst::GENERAL_ERROR,
        }
    }
}

/// Maps pages the guest granted to the backend (`DOMID_BACKEND`).
pub trait GrantMapper {
    /// One mapped 4 KiB page. The grant is marked in use (`GTF_reading`/`GTF_writing`) while
    /// the mapping lives and released when it is dropped.
    type Mapping: SharedPage;

    /// Validates grant `gref` for reading, or for writing if `writable`, and maps its page.
    fn map(&self, gref: GrantRef, writable: bool) -> Result<Self::Mapping, GrantError>;
}

impl<G: GrantMapper + ?Sized> GrantMapper for &G {
    type Mapping = G::Mapping;

    fn map(&self, gref: GrantRef, writable: bool) -> Result<Self::Mapping, GrantError> {
        (**self).map(gref, writable)
    }
}
