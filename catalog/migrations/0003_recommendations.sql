-- Reserved: filled by the recommendations work; an empty migration is a no-op.
SELECT 1;
