-- Reserved: filled by the review work; an empty migration is a no-op.
SELECT 1;
