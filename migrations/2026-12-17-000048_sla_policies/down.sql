DROP TABLE sla_policy_revisions;
DROP TABLE sla_policies;
