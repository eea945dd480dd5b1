//! The data path: the bounce pages a request's data travels in, granted to the backend.
//!
//! Every request gets data pages of its own (no page is in two requests at once), taken from
//! the device's [`PagePool`]: a read's are granted writable, a write's get the data copied in
//! ([`fill`]) and are granted read-only. Sector *k* of a request is sector *k* mod 8 of its page
//! *k* / 8 ([`segments`]). An indirect request lists its segments in one more page, granted
//! read-only. When the response arrives the grants are revoked ([`GrantedPages::revoke`])
//! before the pages are touched or reused; a grant the backend still holds (it never should
//! after answering) is never reused and its page is leaked rather than freed.
//!
//! Pages whose grants were revoked go back to the pool, which keeps up to the most pages the
//! device ever had in flight at once (and at least a ring of 11-page requests' worth). Recycled
//! pages are not zeroed: a read overwrites the sectors it returns, a write the sectors it sends;
//! the rest of such a page holds earlier data of the same disk, which the backend has already
//! seen.

use alloc::vec::Vec;
use core::cell::{Cell, RefCell};

use parapet_abi::blkif::{BLKIF_MAX_SEGMENTS_PER_REQUEST, BlkifSegment};
use parapet_abi::event_channel::DOMID_BACKEND;
use pv_drivers::blkif::segment;
use pv_drivers::shared::SharedPage;

use super::BlockError;
use crate::grant_table::{self, GrantRef};
use crate::page::PageBox;

/// Sectors per page.
pub(super) const SECTORS_PER_PAGE: u64 = 8;
/// Bytes per page.
pub(super) const PAGE_BYTES: usize = pv_drivers::shared::PAGE_SIZE;
/// Spare data pages kept for reuse at least: a full ring of 11-page requests.
const MIN_SPARE_PAGES: usize =
    pv_drivers::blkif::BLKIF_RING_SIZE as usize * BLKIF_MAX_SEGMENTS_PER_REQUEST;

/// The free list of data pages: only pages whose grants were revoked go in. It keeps up to
/// `limit` of them: the most the device has had in flight at once (so a steady stream of
/// requests allocates nothing), and at least [`MIN_SPARE_PAGES`].
#[derive(Debug)]
pub(super) struct PagePool {
    spare: RefCell<Vec<PageBox>>,
    limit: Cell<usize>,
}

impl Default for PagePool {
    fn default() -> Self {
        PagePool {
            spare: RefCell::default(),
            limit: Cell::new(MIN_SPARE_PAGES),
        }
    }
}

impl PagePool {
    /// A spare page, or a fresh (zeroed) one if there is none.
    pub(super) fn take(&self) -> PageBox {
        self.spare.borrow_mut().pop().unwrap_or_default()
    }

    /// Keeps `pages` for reuse (frees those beyond the limit). Their grants must have been
    /// revoked.
    pub(super) fn give(&self, pages: impl IntoIterator<Item = PageBox>) {
        let mut spare = self.spare.borrow_mut();
        for page in pages {
            if spare.len() < self.limit.get() {
                spare.push(page);
            }
        }
    }

    /// Keeps at least `pages` spare pages from now on.
    pub(super) fn keep_at_least(&self, pages: usize) {
        if pages > self.limit.get() {
            self.limit.set(pages);
        }
    }
}

/// Pages from `pool` holding `data`, one per 4 KiB of it.
pub(super) fn fill(pool: &PagePool, data: &[u8]) -> Vec<PageBox> {
    data.chunks(PAGE_BYTES)
        .map(|chunk| {
            let page = pool.take();
            page.write(0, chunk);
            page
        })
        .collect()
}

/// The segments covering `sectors` sectors over `grants`, 8 per page.
pub(super) fn segments(grants: &[GrantRef], sectors: u64) -> Vec<BlkifSegment> {
    grants
        .iter()
        .enumerate()
        .map(|(i, &g)| {
            let in_page = (sectors - i as u64 * SECTORS_PER_PAGE).min(SECTORS_PER_PAGE);
            segment(g.0, 0, in_page as u8 - 1)
        })
        .collect()
}

/// Grants `pages` to the backend (read-only if `readonly`); on failure revokes those granted
/// so far.
fn grant_all(pages: &[PageBox], readonly: bool) -> Result<Vec<GrantRef>, BlockError> {
    let mut grants = Vec::with_capacity(pages.len());
    for page in pages {
        match grant_table::grant_access(page.frame(), DOMID_BACKEND, readonly) {
            Ok(g) => grants.push(g),
            Err(e) => {
                for g in grants {
                    let _ = grant_table::end_access(g);
                }
                return Err(BlockError::Grant(e));
            }
        }
    }
    Ok(grants)
}

/// The pages of one request, granted to the backend: its data pages and, for an indirect
/// request, the page listing its segments.
#[derive(Debug, Default)]
pub(super) struct GrantedPages {
    /// The data pages' grants, then the indirect page's, if any.
    grants: Vec<GrantRef>,
    pages: Vec<PageBox>,
    /// The page listing the segments of an indirect request.
    index: Option<PageBox>,
}

impl GrantedPages {
    /// Grants the data pages `pages` (read-only if `readonly`). On failure the pages go back to
    /// `pool`.
    pub(super) fn grant(
        pages: Vec<PageBox>,
        readonly: bool,
        pool: &PagePool,
    ) -> Result<GrantedPages, BlockError> {
        match grant_all(&pages, readonly) {
            Ok(grants) => Ok(GrantedPages {
                grants,
                pages,
                index: None,
            }),
            Err(e) => {
                pool.give(pages);
                Err(e)
            }
        }
    }

    /// Grants `index`, the page that will list the segments of an indirect request, read-only,
    /// then the data pages `pages` (read-only if `readonly`); returns them with the index
    /// page's grant. On failure every page goes back to `pool`.
    pub(super) fn grant_indirect(
        pages: Vec<PageBox>,
        readonly: bool,
        index: PageBox,
        pool: &PagePool,
    ) -> Result<(GrantedPages, GrantRef), BlockError> {
        let index_gref = match grant_table::grant_access(index.frame(), DOMID_BACKEND, true) {
            Ok(g) => g,
            Err(e) => {
                pool.give(pages);
                pool.give([index]);
                return Err(BlockError::Grant(e));
            }
        };
        let mut grants = match grant_all(&pages, readonly) {
            Ok(g) => g,
            Err(e) => {
                let _ = grant_table::end_access(index_gref);
                pool.give(pages);
                pool.give([index]);
                return Err(e);
            }
        };
        grants.push(index_gref);
        let granted = GrantedPages {
            grants,
            pages,
            index: Some(index),
        };
        Ok((granted, index_gref))
    }

    /// The data pages' grants.
    pub(super) fn data_grants(&self) -> &[GrantRef] {
        &self.grants[..self.pages.len()]
    }

    /// The page listing the segments, for an indirect request.
    pub(super) fn index_page(&self) -> Option<&PageBox> {
        self.index.as_ref()
    }

    /// Pages (data and indirect).
    pub(super) fn count(&self) -> usize {
        self.pages.len() + usize::from(self.index.is_some())
    }

    /// Revokes every grant (the backend has answered, or let go of everything). Returns the
    /// data pages, and gives the indirect page back to `pool`; or, if the backend still holds
    /// a grant, leaks every page (it may still write them) and returns how many grants it
    /// holds.
    pub(super) fn revoke(self, pool: &PagePool) -> Result<Vec<PageBox>, u64> {
        let mut held = 0;
        for g in &self.grants {
            if grant_table::end_access(*g).is_err() {
                held += 1;
            }
        }
        if held > 0 {
            self.leak();
            return Err(held);
        }
        pool.give(self.index);
        Ok(self.pages)
    }

    /// Leaks every page: the backend may still map them.
    pub(super) fn leak(self) {
        core::mem::forget(self.pages);
        core::mem::forget(self.index);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_cover_whole_pages_then_the_rest() {
        let grants = [GrantRef(3), GrantRef(4)];
        let s = segments(&grants, 11);
        assert_eq!((s[0].gref, s[0].first_sect, s[0].last_sect), (3, 0, 7));
        assert_eq!((s[1].gref, s[1].first_sect, s[1].last_sect), (4, 0, 2));
    }

    #[test]
    fn the_pool_keeps_pages_up_to_its_limit() {
        let pool = PagePool::default();
        pool.give((0..MIN_SPARE_PAGES + 2).map(|_| PageBox::new()));
        assert_eq!(pool.spare.borrow().len(), MIN_SPARE_PAGES);
        pool.keep_at_least(MIN_SPARE_PAGES + 1);
        pool.give([PageBox::new(), PageBox::new()]);
        assert_eq!(pool.spare.borrow().len(), MIN_SPARE_PAGES + 1);
        let pages = fill(&pool, &[7u8; PAGE_BYTES + 1]);
        assert_eq!(pages.len(), 2);
        assert_eq!(pool.spare.borrow().len(), MIN_SPARE_PAGES - 1);
    }
}
