-- Without pg_read_all_stats (pg_monitor includes it; on RDS grant pg_monitor), pg_stat_activity hides
-- other users' sessions' state and times: connection counts and long transactions would look clean.
SELECT pg_has_role(current_user, 'pg_read_all_stats', 'MEMBER') OR
       (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS allowed;
