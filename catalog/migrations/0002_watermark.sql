-- Reserved: filled by the watermark work; an empty migration is a no-op.
SELECT 1;
