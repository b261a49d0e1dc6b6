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
//! Writing a buffer here checks no privilege, so EXECUTE on the function is
//! revoked from PUBLIC (only the extension attaches it), and it writes only
//! into the buffer named after the table the trigger fires on. The buffer's
//! one index covers TRUNCATE markers (written through SQL), which these
//! rows never are, so no index entry is due.

use pgrx::pg_sys;
use pgrx::prelude::*;
use std::ffi::{CStr, CString};

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
    Source(usize),
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
            _ => {
                let found = (0..(*source_desc).natts as usize).find(|&s| {
                    let sattr = attribute(source_desc, s);
                    !(*sattr).attisdropped && name_of(sattr) == name
                });
                match found {
                    Some(s) => {
                        let sattr = attribute(source_desc, s);
                        if (*sattr).atttypid != (*battr).atttypid
                            || (*sattr).atttypmod != (*battr).atttypmod
                        {
                            pgrx::error!(
                                "pg_trickle: change buffer column \"{name}\" no longer has the source column's type; \
                                 run SELECT * FROM pgtrickle.migrate()"
                            );
                        }
                        Fill::Source(s)
                    }
                    None => Fill::Null,
                }
            }
        };
        out.push(fill);
    }
    out
}

unsafe fn capture(td: &pg_sys::TriggerData) {
    let trigger = &*td.tg_trigger;
    if trigger.tgnargs != 2 {
        pgrx::error!("pg_trickle_capture() needs the buffer's schema and name as arguments");
    }
    let schema = CStr::from_ptr(*trigger.tgargs.add(0));
    let table = CStr::from_ptr(*trigger.tgargs.add(1));
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
    let sequence_name = CString::new(format!("{}_change_id_seq", table.to_string_lossy()))
        .expect("no NUL in a buffer name");
    let sequence = pg_sys::get_relname_relid(sequence_name.as_ptr(), namespace);

    let op = td.tg_event & pg_sys::TRIGGER_EVENT_OPMASK;
    let tables: &[(*mut pg_sys::Tuplestorestate, u8)] = match op {
        pg_sys::TRIGGER_EVENT_INSERT => &[(td.tg_newtable, b'I')],
        pg_sys::TRIGGER_EVENT_DELETE => &[(td.tg_oldtable, b'D')],
        pg_sys::TRIGGER_EVENT_UPDATE => &[(td.tg_oldtable, b'D'), (td.tg_newtable, b'I')],
        _ => return,
    };

    let buffer = pg_sys::table_open(buffer_oid, pg_sys::RowExclusiveLock as pg_sys::LOCKMODE);
    let buffer_desc = (*buffer).rd_att;
    let source_desc = (*source).rd_att;
    let fills = fills(buffer_desc, source_desc);
    let source_natts = (*source_desc).natts;
    let xid = pg_sys::GetTopFullTransactionId().value;
    let now = pg_sys::GetCurrentTimestamp();
    let natts = (*buffer_desc).natts as usize;
    let mut values = vec![pg_sys::Datum::from(0usize); natts];
    let mut nulls = vec![true; natts];

    for &(store, action) in tables {
        if store.is_null() {
            continue;
        }
        let slot = pg_sys::MakeSingleTupleTableSlot(source_desc, &pg_sys::TTSOpsMinimalTuple);
        let reader = pg_sys::tuplestore_alloc_read_pointer(store, 0);
        pg_sys::tuplestore_select_read_pointer(store, reader);
        pg_sys::tuplestore_rescan(store);
        while pg_sys::tuplestore_gettupleslot(store, true, false, slot) {
            if ((*slot).tts_nvalid as i32) < source_natts {
                pg_sys::slot_getsomeattrs_int(slot, source_natts);
            }
            for (i, fill) in fills.iter().enumerate() {
                let (value, null) = match *fill {
                    Fill::ChangeId => (next_change_id(sequence), false),
                    Fill::Xid => (pg_sys::Datum::from(xid), false),
                    Fill::Action => (pg_sys::Datum::from(action as usize), false),
                    Fill::CapturedAt => (pg_sys::Datum::from(now), false),
                    Fill::Source(s) => (*(*slot).tts_values.add(s), *(*slot).tts_isnull.add(s)),
                    Fill::Null => (pg_sys::Datum::from(0usize), true),
                };
                values[i] = value;
                nulls[i] = null;
            }
            let tuple =
                pg_sys::heap_form_tuple(buffer_desc, values.as_mut_ptr(), nulls.as_mut_ptr());
            pg_sys::simple_heap_insert(buffer, tuple);
            pg_sys::heap_freetuple(tuple);
        }
        pg_sys::ExecDropSingleTupleTableSlot(slot);
    }
    pg_sys::table_close(buffer, pg_sys::NoLock as pg_sys::LOCKMODE);
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
