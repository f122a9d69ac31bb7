package inflate

import (
	"math/bits"
	"sync"
)

// A decode table entry describes what a code stands for:
//
//	bits 0-3    the code's length in bits (subtable entries: the whole code's)
//	bits 4-7    flags: a literal, the end of the block, a subtable, no code
//	bits 8-11   how many extra bits follow the code (subtable: its index bits)
//	bits 16-31  the literal byte, the base length or distance, or where the
//	            subtable starts
//
// A code longer than the main table's bits is found in two lookups: the
// main entry for its first bits points at a subtable indexed by the bits
// that follow.
const (
	litFlag = 1 << 4
	eobFlag = 1 << 5
	subFlag = 1 << 6
	badFlag = 1 << 7 // no code: an empty tree's, an incomplete one's other half, or a symbol deflate reserves
)

// The main tables' sizes, in bits of the code they index: 11 bits decode
// nearly every literal/length code of a real stream in one lookup.
const (
	litBits  = 11
	distBits = 8
	preBits  = 7 // code length codes are at most 7 bits: no subtables
	maxCode  = 15
)

// Table sizes: the main table, then room for the subtables. A complete
// code whose subtable has d index bits puts at least d+1 of its symbols
// in it, so n symbols need at most ceil(n/(D+1)) subtables of 2^D entries,
// D the most index bits a subtable can have (15 minus the main bits).
const (
	litTableSize  = 1<<litBits + (288+maxCode-litBits)/(maxCode-litBits+1)<<(maxCode-litBits)
	distTableSize = 1<<distBits + (32+maxCode-distBits)/(maxCode-distBits+1)<<(maxCode-distBits)
)

// The base and extra bits of length codes 257-285 and distance codes
// 0-29 (RFC 1951 3.2.5).
var (
	lengthBase  = [29]uint16{3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258}
	lengthExtra = [29]uint8{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0}
	distBase    = [30]uint16{1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577}
	distExtra   = [30]uint8{0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13}
)

// shared holds what every Decoder reads and none writes, made on first
// use: a process that never inflates pays nothing at start.
var shared struct {
	once     sync.Once
	litInfo  [288]uint32 // a literal/length symbol's entry, without its length
	distInfo [32]uint32
	preInfo  [19]uint32
	fixedLit [litTableSize]uint32 // the fixed code's tables (RFC 1951 3.2.6)
	fixedDst [distTableSize]uint32
}

func initShared() {
	s := &shared
	for i := range 256 {
		s.litInfo[i] = litFlag | uint32(i)<<16
	}
	s.litInfo[256] = eobFlag
	for i := range lengthBase {
		s.litInfo[257+i] = uint32(lengthBase[i])<<16 | uint32(lengthExtra[i])<<8
	}
	s.litInfo[286], s.litInfo[287] = badFlag, badFlag // in the fixed code, never used
	for i := range distBase {
		s.distInfo[i] = uint32(distBase[i])<<16 | uint32(distExtra[i])<<8
	}
	s.distInfo[30], s.distInfo[31] = badFlag, badFlag
	for i := range s.preInfo {
		s.preInfo[i] = uint32(i) << 16
	}

	var lens [288]uint8
	for i := range lens {
		switch {
		case i < 144:
			lens[i] = 8
		case i < 256:
			lens[i] = 9
		case i < 280:
			lens[i] = 7
		default:
			lens[i] = 8
		}
	}
	build(s.fixedLit[:], litBits, lens[:], s.litInfo[:])
	for i := range 32 {
		lens[i] = 5
	}
	build(s.fixedDst[:], distBits, lens[:32], s.distInfo[:])
}

// build fills table, whose first 1<<mainBits entries are the main table,
// with the canonical Huffman code of the code lengths lens: symbol i's
// entry is info[i] with its length. It reports false for lengths that make
// no code compress/flate accepts: over-subscribed, or incomplete other
// than empty or a single code of one bit, which zlib makes and whose
// other half decodes as no code, as does all of an empty tree.
func build(table []uint32, mainBits uint, lens []uint8, info []uint32) bool {
	var count [maxCode + 1]int
	for _, l := range lens {
		count[l]++
	}
	count[0] = 0
	longest := 0
	space := 0 // the code space used, in units of the longest code
	for l := 1; l <= maxCode; l++ {
		space <<= 1
		space += count[l]
		if count[l] > 0 {
			longest = l
		}
	}
	// space is now counted in units of 2^-15; bring it to the longest.
	space >>= maxCode - longest
	main := table[:1<<mainBits]
	switch {
	case longest == 0:
		fillBad(main)
		return true
	case space == 1<<longest:
	case space == 1 && longest == 1:
		fillBad(main)
	default:
		return false
	}

	// Symbols sorted by length, then value: the order of their codes.
	var offs [maxCode + 2]int
	for l := 1; l <= maxCode; l++ {
		offs[l+1] = offs[l] + count[l]
	}
	var sorted [288]uint16
	n := 0
	for s, l := range lens {
		if l != 0 {
			sorted[offs[l]] = uint16(s)
			offs[l]++
			n++
		}
	}

	var code uint32 // the next code, in the order RFC 1951 writes them
	length := 1
	left := count // codes of each length not yet placed
	prefix := uint32(1<<32 - 1)
	subStart, subBits := uint32(0), uint(0)
	next := uint32(1 << mainBits) // where the next subtable goes
	for _, s := range sorted[:n] {
		for left[length] == 0 {
			length++
			code <<= 1
		}
		l := uint(length)
		rev := uint32(bits.Reverse16(uint16(code))) >> (16 - l) // as it comes off the stream
		e := info[s] | uint32(l)
		if l <= mainBits {
			for j := rev; j < 1<<mainBits; j += 1 << l {
				main[j] = e
			}
		} else {
			if p := rev & (1<<mainBits - 1); p != prefix {
				// A subtable for the codes starting with p: as deep as
				// the longest of them, which the codes still to place
				// at each length tell.
				prefix = p
				subBits = l - mainBits
				used := left[l]
				for used < 1<<subBits {
					if subBits++; mainBits+subBits > maxCode {
						return false // cannot happen for a complete code
					}
					used = used<<1 + left[mainBits+subBits]
				}
				subStart = next
				next += 1 << subBits
				if next > uint32(len(table)) {
					return false // cannot happen for a complete code: see litTableSize
				}
				main[p] = subFlag | subStart<<16 | uint32(subBits)<<8
			}
			for j := rev >> mainBits; j < 1<<subBits; j += 1 << (l - mainBits) {
				table[subStart+j] = e
			}
		}
		left[length]--
		code++
	}
	return true
}

func fillBad(t []uint32) {
	for i := range t {
		t[i] = badFlag
	}
}
