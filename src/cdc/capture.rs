//! The capture trigger function, in C.
//!
//! Statement-level AFTER INSERT / UPDATE / DELETE triggers on a source call
//! `pgtrickle.pg_trickle_capture(buffer_schema, buffer_name)`. It copies the
//! rows of the statement's transition tables into the buffer with
//! `simple_heap_insert`: no SPI, no executor, no PL/pgSQL, and no SECURITY
//! DEFINER switch — the writes of a single-row UPDATE cost a fraction of an
//! `INSERT ... SELECT`. Rows are matched to buffer columns by name; the
//! buffer's own columns (`change_id`, `xid`, `action`, `captured_at`) get the
//! values their defaults would give.
//!
//! An UPDATE becomes one row, action `U`, with the new values in the
//! source's column names and the old ones in the `old_column` names: half
//! the rows to write, and to read at refresh. PostgreSQL appends each
//! updated row's old and new images to the two transition tables together,
//! so the n-th rows of both belong together. A buffer without the old
//! columns (made by an older version, before `migrate()`) gets a `D` row
//! and an `I` row instead, and so does an update that changes a column the
//! UPDATE trigger's third argument lists (`buffer::split_columns_arg`):
//! one that some stream table joins, filters or groups on.
//!
//! Writing a buffer here checks no privilege, so EXECUTE on the function is
//! revoked from PUBLIC (only the extension attaches it), and it writes only
//! into the buffer named after the table the trigger fires on. The buffer's
//! one index covers TRUNCATE markers (written through SQL), which these
//! rows never are, so no index entry is due.

use pgrx::pg_sys;
use pgrx::prelude::*;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::rc::Rc;

#[pg_schema]
mod pgtrickle {
    use pgrx::prelude::*;

    /// Copies a statement's changes into the source's change buffer.
    #[pg_trigger]
    fn pg_trickle_capture<'a>(
        trigger: &'a PgTrigger<'a>,
    ) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, PgTriggerError> {
        unsafe { super::capture(trigger.trigger_data()) };
        Ok(None)
    }
}

// Writing a buffer here checks no privilege: only the extension attaches
// the function (EXECUTE is checked when a trigger is created).
extension_sql!(
    "REVOKE ALL ON FUNCTION pgtrickle.pg_trickle_capture() FROM PUBLIC;",
    name = "capture_revoke",
    requires = [pgtrickle::pg_trickle_capture]
);

/// What fills one buffer column.
#[derive(Clone, Copy)]
enum Fill {
    ChangeId,
    Xid,
    Action,
    CapturedAt,
    /// The source column at this index, from the row (the new row of an
    /// update).
    Source(usize),
    /// The source column at this index, from the old row of an update.
    Old(usize),
    Null,
}

unsafe fn name_of(attr: *const pg_sys::FormData_pg_attribute) -> String {
    CStr::from_ptr((*attr).attname.data.as_ptr())
        .to_string_lossy()
        .into_owned()
}

/// Attribute `i` of `desc` (the layout of a tuple descriptor differs
/// between major versions; pgrx's wrapper knows each).
unsafe fn attribute(desc: pg_sys::TupleDesc, i: usize) -> *const pg_sys::FormData_pg_attribute {
    let desc = pgrx::PgTupleDesc::from_pg_unchecked(desc);
    desc.get(i).expect("attribute within natts") as *const pg_sys::FormData_pg_attribute
}

/// How each buffer column is filled from a source row.
unsafe fn fills(buffer_desc: pg_sys::TupleDesc, source_desc: pg_sys::TupleDesc) -> Vec<Fill> {
    // Buffer column name -> what fills it, for every live source column.
    let mut by_name: HashMap<String, Fill> = HashMap::new();
    for s in 0..(*source_desc).natts as usize {
        let sattr = attribute(source_desc, s);
        if (*sattr).attisdropped {
            continue;
        }
        let name = name_of(sattr);
        by_name.insert(pgtrickle_core::buffer::old_column(&name), Fill::Old(s));
        by_name.insert(pgtrickle_core::buffer::value_column(&name), Fill::Source(s));
    }
    let mut out = Vec::with_capacity((*buffer_desc).natts as usize);
    for b in 0..(*buffer_desc).natts as usize {
        let battr = attribute(buffer_desc, b);
        if (*battr).attisdropped {
            out.push(Fill::Null);
            continue;
        }
        let name = name_of(battr);
        let fill = match name.as_str() {
            "change_id" => Fill::ChangeId,
            "xid" => Fill::Xid,
            "action" => Fill::Action,
            "captured_at" => Fill::CapturedAt,
            _ => match by_name.get(&name) {
                Some(&fill) => {
                    let (Fill::Source(s) | Fill::Old(s)) = fill else {
                        unreachable!("only source columns are mapped by name")
                    };
                    let sattr = attribute(source_desc, s);
                    if (*sattr).atttypid != (*battr).atttypid
                        || (*sattr).atttypmod != (*battr).atttypmod
                    {
                        pgrx::error!(
                            "pg_trickle: change buffer column \"{name}\" no longer has the source column's type; \
                             run SELECT * FROM pgtrickle.migrate()"
                        );
                    }
                    fill
                }
                None => Fill::Null,
            },
        };
        out.push(fill);
    }
    out
}

/// How a buffer is filled from its source: worked out from the names of
/// their columns at the first statement of a backend that writes the
/// source, and kept until either relation (or the buffer's sequence)
/// changes, so that a single-row write does not pay for it every time.
struct Layout {
    fills: Vec<Fill>,
    /// The source's columns that are not dropped.
    source_live: usize,
    /// The buffer's `change_id` sequence.
    sequence: pg_sys::Oid,
}

impl Layout {
    /// Whether every column of the source has a buffer column for its old
    /// value.
    fn captures_old_values(&self) -> bool {
        self.fills
            .iter()
            .filter(|f| matches!(f, Fill::Old(_)))
            .count()
            == self.source_live
    }
}

thread_local! {
    /// Layouts by (buffer, source).
    static LAYOUTS: RefCell<HashMap<(u32, u32), Rc<Layout>>> = RefCell::new(HashMap::new());
    static LAYOUTS_WATCHED: Cell<bool> = const { Cell::new(false) };
    /// Set when an invalidation came while the layouts were borrowed.
    static LAYOUTS_STALE: Cell<bool> = const { Cell::new(false) };
}

/// Forgets the layouts that involve relation `relid` (every layout for
/// `InvalidOid`), as PostgreSQL invalidates its own cache entries.
unsafe extern "C-unwind" fn relation_changed(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    LAYOUTS.with(|layouts| {
        // Never borrowed across a call into PostgreSQL; if it were, keep
        // nothing rather than miss the change.
        let Ok(mut layouts) = layouts.try_borrow_mut() else {
            LAYOUTS_STALE.with(|s| s.set(true));
            return;
        };
        if relid == pg_sys::InvalidOid {
            layouts.clear();
        } else {
            let r = relid.to_u32();
            layouts.retain(|&(b, s), l| b != r && s != r && l.sequence.to_u32() != r);
        }
    });
}

/// The layout of `buffer` (named `table` in `namespace`) for `source`, both
/// open.
unsafe fn layout(
    buffer: pg_sys::Relation,
    source: pg_sys::Relation,
    namespace: pg_sys::Oid,
    table: &CStr,
) -> Rc<Layout> {
    let key = ((*buffer).rd_id.to_u32(), (*source).rd_id.to_u32());
    if LAYOUTS_STALE.with(|s| s.replace(false)) {
        LAYOUTS.with(|l| l.borrow_mut().clear());
    }
    if let Some(kept) = LAYOUTS.with(|l| l.borrow().get(&key).cloned()) {
        return kept;
    }
    if !LAYOUTS_WATCHED.with(|w| w.replace(true)) {
        pg_sys::CacheRegisterRelcacheCallback(Some(relation_changed), pg_sys::Datum::from(0));
    }
    let source_desc = (*source).rd_att;
    let sequence_name = CString::new(format!("{}_change_id_seq", table.to_string_lossy()))
        .expect("no NUL in a buffer name");
    let layout = Rc::new(Layout {
        fills: fills((*buffer).rd_att, source_desc),
        source_live: (0..(*source_desc).natts as usize)
            .filter(|&s| !(*attribute(source_desc, s)).attisdropped)
            .count(),
        sequence: pg_sys::get_relname_relid(sequence_name.as_ptr(), namespace),
    });
    LAYOUTS.with(|l| l.borrow_mut().insert(key, layout.clone()));
    layout
}

unsafe fn capture(td: &pg_sys::TriggerData) {
    let trigger = &*td.tg_trigger;
    if !(2..=3).contains(&trigger.tgnargs) {
        pgrx::error!(
            "pg_trickle_capture() needs the buffer's schema and name (and the columns splitting updates) as arguments"
        );
    }
    let schema = CStr::from_ptr(*trigger.tgargs.add(0));
    let table = CStr::from_ptr(*trigger.tgargs.add(1));
    let split_on: Vec<usize> = if trigger.tgnargs == 3 {
        let arg = CStr::from_ptr(*trigger.tgargs.add(2)).to_string_lossy();
        let Some((attnums, _)) = pgtrickle_core::buffer::parse_split_columns_arg(&arg) else {
            pgrx::error!(
                "pg_trickle_capture(): \"{arg}\" does not list the columns splitting updates"
            );
        };
        attnums.into_iter().map(|a| a as usize - 1).collect()
    } else {
        Vec::new()
    };
    let source = td.tg_relation;
    // Only the buffer of the table the trigger fires on. After a
    // pg_restore the restored triggers still name the dumped database's
    // buffers until the repair replaces them; their changes are not needed
    // (every stream table is refreshed in full after the repair).
    if table.to_bytes() != format!("changes_{}", (*source).rd_id.to_u32()).as_bytes() {
        return;
    }
    let namespace = pg_sys::get_namespace_oid(schema.as_ptr(), false);
    let buffer_oid = pg_sys::get_relname_relid(table.as_ptr(), namespace);
    if buffer_oid == pg_sys::InvalidOid {
        pgrx::error!(
            "pg_trickle: change buffer {}.{} is missing",
            schema.to_string_lossy(),
            table.to_string_lossy()
        );
    }

    let op = td.tg_event & pg_sys::TRIGGER_EVENT_OPMASK;
    if ![
        pg_sys::TRIGGER_EVENT_INSERT,
        pg_sys::TRIGGER_EVENT_DELETE,
        pg_sys::TRIGGER_EVENT_UPDATE,
    ]
    .contains(&op)
    {
        return;
    }

    let buffer = pg_sys::table_open(buffer_oid, pg_sys::RowExclusiveLock as pg_sys::LOCKMODE);
    // With both relations open, a layout still kept is up to date: opening
    // the buffer took in any invalidation that was pending.
    let layout = layout(buffer, source, namespace, table);
    let mut writer = Writer::new(buffer, source, layout);
    match op {
        pg_sys::TRIGGER_EVENT_INSERT => writer.write_all(td.tg_newtable, b'I'),
        pg_sys::TRIGGER_EVENT_DELETE => writer.write_all(td.tg_oldtable, b'D'),
        _ => {
            let paired = writer.layout.captures_old_values()
                && !td.tg_oldtable.is_null()
                && !td.tg_newtable.is_null()
                && pg_sys::tuplestore_tuple_count(td.tg_oldtable)
                    == pg_sys::tuplestore_tuple_count(td.tg_newtable);
            if paired {
                writer.write_pairs(td.tg_oldtable, td.tg_newtable, &split_on);
            } else {
                writer.write_all(td.tg_oldtable, b'D');
                writer.write_all(td.tg_newtable, b'I');
            }
        }
    }
    writer.finish();
    pg_sys::table_close(buffer, pg_sys::NoLock as pg_sys::LOCKMODE);
}

/// Writes buffer rows for one trigger call.
struct Writer {
    buffer: pg_sys::Relation,
    source_desc: pg_sys::TupleDesc,
    layout: Rc<Layout>,
    xid: u64,
    now: pg_sys::TimestampTz,
    values: Vec<pg_sys::Datum>,
    nulls: Vec<bool>,
    slots: [*mut pg_sys::TupleTableSlot; 2],
}

impl Writer {
    unsafe fn new(
        buffer: pg_sys::Relation,
        source: pg_sys::Relation,
        layout: Rc<Layout>,
    ) -> Writer {
        let source_desc = (*source).rd_att;
        let natts = (*(*buffer).rd_att).natts as usize;
        Writer {
            buffer,
            source_desc,
            layout,
            xid: pg_sys::GetTopFullTransactionId().value,
            now: pg_sys::GetCurrentTimestamp(),
            values: vec![pg_sys::Datum::from(0usize); natts],
            nulls: vec![true; natts],
            slots: [
                pg_sys::MakeSingleTupleTableSlot(source_desc, &pg_sys::TTSOpsMinimalTuple),
                pg_sys::MakeSingleTupleTableSlot(source_desc, &pg_sys::TTSOpsMinimalTuple),
            ],
        }
    }

    /// A read pointer at the start of `store`.
    unsafe fn rewind(store: *mut pg_sys::Tuplestorestate) -> i32 {
        let reader = pg_sys::tuplestore_alloc_read_pointer(store, pg_sys::EXEC_FLAG_REWIND as i32);
        pg_sys::tuplestore_select_read_pointer(store, reader);
        pg_sys::tuplestore_rescan(store);
        reader
    }

    /// The next row of `store` (read through `reader`) into slot `k`.
    unsafe fn next(&mut self, store: *mut pg_sys::Tuplestorestate, reader: i32, k: usize) -> bool {
        pg_sys::tuplestore_select_read_pointer(store, reader);
        let slot = self.slots[k];
        if !pg_sys::tuplestore_gettupleslot(store, true, false, slot) {
            return false;
        }
        let natts = (*self.source_desc).natts;
        if ((*slot).tts_nvalid as i32) < natts {
            pg_sys::slot_getsomeattrs_int(slot, natts);
        }
        true
    }

    /// One row per row of `store`, with `action`.
    unsafe fn write_all(&mut self, store: *mut pg_sys::Tuplestorestate, action: u8) {
        if store.is_null() {
            return;
        }
        let reader = Self::rewind(store);
        while self.next(store, reader, 0) {
            self.write(action, self.slots[0], None);
        }
    }

    /// One `U` row per updated row: the n-th old row with the n-th new one;
    /// a `D` row and an `I` row instead for an update that changes a column
    /// of `split_on` (source attribute indexes), so that refreshes joining,
    /// filtering or grouping on those columns never find a `U` row whose
    /// images fall apart (see `dvm::paired`).
    unsafe fn write_pairs(
        &mut self,
        old: *mut pg_sys::Tuplestorestate,
        new: *mut pg_sys::Tuplestorestate,
        split_on: &[usize],
    ) {
        let old_reader = Self::rewind(old);
        let new_reader = Self::rewind(new);
        while self.next(old, old_reader, 1) && self.next(new, new_reader, 0) {
            if split_on.iter().any(|&s| self.differs(s)) {
                self.write(b'D', self.slots[1], None);
                self.write(b'I', self.slots[0], None);
            } else {
                self.write(b'U', self.slots[0], Some(self.slots[1]));
            }
        }
    }

    /// Whether source attribute `s` differs between the new row (slot 0)
    /// and the old one (slot 1), byte for byte: equal bytes are the same
    /// value, and values that are equal in other bytes count as changed.
    unsafe fn differs(&self, s: usize) -> bool {
        if s >= (*self.source_desc).natts as usize {
            return false;
        }
        let attr = attribute(self.source_desc, s);
        if (*attr).attisdropped {
            return false;
        }
        let [new, old] = self.slots;
        match (*(*new).tts_isnull.add(s), *(*old).tts_isnull.add(s)) {
            (true, true) => false,
            (false, false) => !same_bytes(
                *(*new).tts_values.add(s),
                *(*old).tts_values.add(s),
                (*attr).attbyval,
                (*attr).attlen,
            ),
            _ => true,
        }
    }

    unsafe fn write(
        &mut self,
        action: u8,
        row: *mut pg_sys::TupleTableSlot,
        old: Option<*mut pg_sys::TupleTableSlot>,
    ) {
        for i in 0..self.layout.fills.len() {
            let (value, null) = match self.layout.fills[i] {
                Fill::ChangeId => (next_change_id(self.layout.sequence), false),
                Fill::Xid => (pg_sys::Datum::from(self.xid), false),
                Fill::Action => (pg_sys::Datum::from(action as usize), false),
                Fill::CapturedAt => (pg_sys::Datum::from(self.now), false),
                Fill::Source(s) => (*(*row).tts_values.add(s), *(*row).tts_isnull.add(s)),
                Fill::Old(s) => match old {
                    Some(old) => (*(*old).tts_values.add(s), *(*old).tts_isnull.add(s)),
                    None => (pg_sys::Datum::from(0usize), true),
                },
                Fill::Null => (pg_sys::Datum::from(0usize), true),
            };
            self.values[i] = value;
            self.nulls[i] = null;
        }
        let tuple = pg_sys::heap_form_tuple(
            (*self.buffer).rd_att,
            self.values.as_mut_ptr(),
            self.nulls.as_mut_ptr(),
        );
        pg_sys::simple_heap_insert(self.buffer, tuple);
        pg_sys::heap_freetuple(tuple);
    }

    unsafe fn finish(self) {
        for slot in self.slots {
            pg_sys::ExecDropSingleTupleTableSlot(slot);
        }
    }
}

/// Whether two values of a type (`byval`, `len` as in pg_attribute) are
/// stored as the same bytes, as PostgreSQL's `datumIsEqual` decides.
unsafe fn same_bytes(a: pg_sys::Datum, b: pg_sys::Datum, byval: bool, len: i16) -> bool {
    if byval {
        return a == b;
    }
    let size = |p: *const u8| match len {
        -1 => pgrx::varlena::varsize_any(p.cast()),
        -2 => CStr::from_ptr(p.cast()).to_bytes().len() + 1,
        n => n as usize,
    };
    let (pa, pb) = (
        a.cast_mut_ptr::<u8>() as *const u8,
        b.cast_mut_ptr::<u8>() as *const u8,
    );
    let (sa, sb) = (size(pa), size(pb));
    sa == sb && std::slice::from_raw_parts(pa, sa) == std::slice::from_raw_parts(pb, sb)
}

/// `nextval` of the buffer's sequence, as its owner: the writer of the
/// source has no privilege on it.
unsafe fn next_change_id(sequence: pg_sys::Oid) -> pg_sys::Datum {
    crate::spi::as_role(crate::spi::superuser(), || {
        pg_sys::OidFunctionCall1Coll(
            pg_sys::Oid::from(pg_sys::F_NEXTVAL),
            pg_sys::InvalidOid,
            pg_sys::Datum::from(sequence),
        )
    })
}
