# prefetchd's ?debug=1 answer -> a pgbench script of the same transaction:
# BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY, each statement in the
# order prefetchd sent it with $n replaced by its parameter as a quoted
# literal (NULL for null), COMMIT. One statement per line.
def lit: if . == null then "NULL" else "'" + gsub("'"; "''") + "'" end;
"BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;",
(.queries[] | . as $q
 | reduce range(($q.params | length); 0; -1) as $i
     ($q.sql; gsub("\\$\($i)(?![0-9])"; ($q.params[$i - 1] | lit)))
 | . + ";"),
"COMMIT;"
