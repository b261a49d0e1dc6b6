use pgtrickle_e2e::oracle::{cases, RandomDml, TableSpec};
use pgtrickle_e2e::cluster_with_extension;

fn items(max_id: i64) -> TableSpec {
    TableSpec::new("items").pk("id", max_id).int("grp", 0, 4).int("val", 0, 9).num("amt", -5, 20)
        .text("name", &["a", "b", "c", "x", ""]).max_rows(max_id).initial_rows(max_id * 2 / 3)
}
fn customers() -> TableSpec {
    TableSpec::new("customers").pk("id", 8).text("region", &["north", "south", "east", "west"])
        .text("name", &["ann", "bob", "cy", "dee"]).int("tier", 0, 3).max_rows(8).initial_rows(6)
}

#[test]
fn scratch_scalar_no_minmax() {
    let (cluster, mut client) = cluster_with_extension();
    let mut dml = RandomDml::new("scratch_scalar_no_minmax", vec![items(12)]);
    dml.attach(&cluster);
    dml.setup(&mut client);
    dml.create_st(&mut client, "st_scalar", "SELECT count(*) AS n, sum(val) AS s, avg(val) AS a, count(amt) AS na FROM items", "DIFFERENTIAL");
    dml.create_st(&mut client, "st_scalar_filtered", "SELECT count(*) AS n, sum(amt) AS s FROM items WHERE grp = 1", "DIFFERENTIAL");
    for i in 0..cases(30) {
        dml.next_round(&mut client);
        match i % 6 {
            2 => dml.exec(&mut client, "DELETE FROM items"),
            5 => dml.exec(&mut client, "TRUNCATE items"),
            _ => dml.random_dml(&mut client),
        }
        dml.refresh_and_check_all(&mut client);
    }
    dml.finish(&mut client);
}

#[test]
fn scratch_st_on_st_no_minmax() {
    let (cluster, mut client) = cluster_with_extension();
    let mut dml = RandomDml::new("scratch_st_on_st_no_minmax", vec![items(30), customers()]);
    dml.attach(&cluster);
    dml.setup(&mut client);
    for (name, query) in [
        ("st_base_agg", "SELECT grp, count(*) AS n, sum(val) AS s FROM items GROUP BY grp"),
        ("st_base_proj", "SELECT id, grp, val FROM items WHERE val > 2"),
        ("st_down_filter", "SELECT grp, n, s FROM st_base_agg WHERE n > 1"),
        ("st_down_scalar", "SELECT sum(n) AS total_n, count(*) AS groups FROM st_base_agg"),
        ("st_down_join", "SELECT b.grp, count(*) AS n, sum(c.tier) AS tiers FROM st_base_proj b JOIN customers c ON c.tier = b.grp GROUP BY b.grp"),
        ("st_down_level3", "SELECT grp FROM st_down_filter WHERE s > 10"),
    ] {
        dml.create_st(&mut client, name, query, "DIFFERENTIAL");
    }
    for _ in 0..cases(30) {
        dml.next_round(&mut client);
        dml.random_dml(&mut client);
        if dml.rng.pct(25) {
            for name in ["st_base_agg", "st_base_proj"] {
                dml.refresh(&mut client, name);
                dml.check(&mut client, name);
            }
        } else {
            dml.refresh_and_check_all(&mut client);
        }
    }
    dml.refresh_and_check_all(&mut client);
    dml.finish(&mut client);
}
