// Command pie releases its image and then runs code that reads what the
// loader relocated in a position-independent build: interface method
// tables, type links, the allocator's type data. TestReleaseImageInAPIE
// builds it with -buildmode=pie and runs it.
package main

import (
	"fmt"
	"os"
	"runtime"
	"sort"
	"strings"

	"github.com/ferrysync/ferry/internal/procmem"
)

type shape interface{ area() float64 }

type square struct{ side float64 }

func (s square) area() float64 { return s.side * s.side }

func main() {
	if err := procmem.ReleaseImage(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var total float64
	m := map[string]shape{}
	for i := range 10000 {
		m[fmt.Sprint("k", i)] = square{float64(i % 7)}
	}
	keys := make([]string, 0, len(m))
	for k, s := range m {
		keys = append(keys, k)
		total += s.area()
	}
	sort.Strings(keys)
	runtime.GC()
	fmt.Println(strings.ToUpper("ok"), len(keys), total)
}
