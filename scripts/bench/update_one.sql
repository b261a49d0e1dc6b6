-- pgbench script: one single-row UPDATE of a random order (variable :orders from -D).
\set id random(1, :orders)
UPDATE orders SET amount = amount + 1 WHERE id = :id;
