// Package watermark owns the invisible, keyed video watermark: embedding a
// 64-bit payload into the luma of every frame and detecting it again from a
// leaked copy that was re-encoded, scaled, cropped, brightened or flipped.
// It is plain Go on 8-bit luma planes; decoding and encoding video is the
// caller's business (package media).
//
// # Pattern
//
// The frame is cut into square cells of 8 px, at most 192 across (10 px at
// 1920 wide) and at least 64 (smaller cells do not survive CRF 35 or
// H.265), so the grid is defined relative to the frame and survives any
// uniform rescale. Cells form 32x32 tiles repeated over the frame: a crop
// then only shifts the tiling cyclically. Each tile cell carries one chip,
// +1 or -1: a keyed quarter of the cells carry a sync pattern, the others
// the 330 coded bits (each bit 2 or 3 cells per tile, keyed permutation and
// signs). Chips are interpolated bilinearly between cell centres, which
// keeps the pattern smooth and mostly low frequency: it survives
// compression and downscaling and changes local structure (SSIM) little.
// The pattern is the same in every frame, so the encoder's inter
// prediction carries it almost for free.
//
// That is GridFine. Flat content (slides, code editors, flat animation)
// is marked on GridBlock instead: the same tiling with cells of 16 px at
// 432p and 540p, 32 at 720p and 1080p, 64 at 2160p, each a constant offset
// of one luma level over a square aligned to the codec's macroblocks (a
// tile need only be 70% seen), so an I-frame codes
// them in DC coefficients. On flat content it costs a tenth to a half of
// GridFine's bits and survives H.265 CRF 35 better; on busy camera content
// it loses (README). GridChooser rules the block grid in or out per
// video from a sample of keyframes (the pipeline then picks between the
// grids by a trial encode, unless GridChooser.Decisive says screen content
// settles it); the detector needs no hint, the two grids are different
// zooms of one search. Every keyed choice comes from an HMAC-SHA256 stream
// of the secret; without the key the pattern can be neither read nor
// forged.
//
// # Motion gate
//
// A fixed pattern is free where the picture stands still and costly where
// it moves: every predicted block of a scrolling editor pays for the
// pattern against the moving text. On GridBlock, MotionGate takes the mark
// out, for one block of GateFrames frames, of the 32 px squares that moved
// in at least 8 of the block's frame pairs, and of their neighbours, at
// most a quarter of the frame (camera footage and animation move all
// over). It reads only the block's own frames, so a resumed pass gates
// alike; GatedOffsets is the block's plane.
//
// # Masking
//
// On GridFine, per 16x16 block the amplitude grows with texture (mean
// absolute gradient) from a floor on flat areas, so white slides and dark
// screens carry the mark too, to a cap; small frames, whose cells are fewer
// pixels, get proportionally less. GridBlock is one level everywhere: the
// smallest step, already robust on a whole macroblock. Embedding is
// O(pixels): the pattern's distinct rows are built once per video (size,
// grid, payload), the mask is one pass on a subsample, and the pattern is
// added with integer arithmetic.
//
// Then the mask's energy is shared between regions by what the detector
// will make of it (allocate): it weighs every sample by about 1/σ², σ the
// host's local deviation at its grid's scale. So regions smooth at that
// scale (out-of-focus backgrounds, sky, fine even texture) take up to 1.5
// times their masked amplitude, busy ones (edges, structure) down to half,
// interpolated between 80-px regions at 1080p. The frame's mark energy, so
// its PSNR, is kept. A video's frames take their block's first frame's
// allocation, as they take its pattern. On Big Buck Bunny, at equal PSNR,
// it lifts the median 32-frame window's bit SNR after x264 CRF 28 from
// 0.71 to 0.96. In a video, regions that moved since the previous block's
// first frame take less (the encoder pays there for the fixed pattern in
// every predicted frame): a sixth to a fifth off the mark's bitrate cost
// on Big Buck Bunny at the same bit SNR.
//
// # Host-interference cancellation
//
// On busy camera content the detector's soft bits are limited by the host
// picture, which barely changes within a window, not by noise. Video marks
// GridFine frames per block of 32 (restarting at every segment, so a
// resumed pass marks alike): it reads the block's first frame, unmarked and
// with the plain mark, the way the detector will at the mark's own
// geometry, and boosts the cells of each coded bit and sync chip the host
// works against (up to 3 times), then scales the pattern back to the plain
// energy. On Big Buck Bunny's first frame the plain mark reads 24 of 330
// coded bits wrong before any attack, the cancelled one none
// (TestCancelInterference). The detector is unchanged: it reads marks made
// either way.
//
// # Payload, error correction and false alarms
//
// The 64 payload bits are followed by a 40-bit tag, the first 40 bits of
// HMAC-SHA256(secret, payload), and the 104 bits are encoded with the K=7,
// rate-1/3 convolutional code of LTE (generators 133, 171, 165 octal,
// zero-terminated: 330 coded bits) and decoded with a soft list Viterbi
// decoder: its 8 best paths are tag-tested in turn, which decodes at about
// a tenth lower bit SNR than the best path alone (0.8 dB on a Gaussian
// channel; TestListViterbi).
//
// A detection is accepted only when a decoded tag equals the HMAC of its
// decoded payload under the key tried. For content not marked with that key
// the tag of whatever payload the decoder produces is, HMAC being a PRF,
// uniform and independent of the content: one tag test passes with
// probability 2^-40. One detection (one Result call) decodes at most 4
// candidate geometries per key, tests 8 paths per decode, and tries at most
// MaxKeys = 16 keys, so
//
//	P(false identification) <= 4 * 8 * 16 * 2^-40 ~= 4.7e-10 per detection
//
// (2.9e-11 per detection with one key), below the 1e-9 required. With
// SearchAspect a second stage decodes at most 4 more per key: 9.3e-10.
// Callers that scan W separate windows of a file multiply by W.
//
// # Detection
//
// Each frame is resampled to a 384-sample-wide grid (two samples per cell
// at zoom 1), high-passed (minus the 5x5 local mean), normalized by the
// local deviation and clipped, which weights flat areas as much as textured
// ones and makes brightness and contrast irrelevant, and summed over
// frames: soft evidence accumulates before any decision. Result then
// searches the geometry once on the sum: for 314 zooms from 0.965 to 6.27
// in 0.6% steps (GridFine at 1.0 and 1.5 on small frames, GridBlock at
// 3.2-4.8, each with crops keeping 77-100% and any uniform resize; the step
// keeps the fold misaligned by under half a cell at the frame edge), it folds the
// grid modulo the tile, and one complex FFT correlation per zoom against
// the key's sync template gives the best cyclic shift for the straight and
// the mirrored (horizontal flip) fold at once. The best candidates are
// refined at half-cell resolution, their data cells read out as soft bit
// values and decoded. With SearchAspect, when that finds nothing, a second
// stage repeats the search with the rows zoomed 0.72-1.39 times the
// columns (a non-uniform resize: 16:9 squeezed to 4:3, a one-sided crop
// stretched back), about 37 times the work.
package watermark
