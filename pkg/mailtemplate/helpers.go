package mailtemplate

import (
	"fmt"
	"reflect"
	"sort"
	"strings"

	"github.com/aymerick/raymond"
)

// each is raymond's #each helper with its output counted against the
// budget (so nested loops over large lists stop at the limit instead of
// exhausting memory) and maps iterated in key order (so a render is
// deterministic). Block parameters (as |x|) are not supported.
func each(context any, options *raymond.Options) any {
	b, _ := options.Data(budgetKey).(*budget)
	if b == nil {
		panic(&LimitError{Part: "template", Reason: "#each outside a render"})
	}
	if !raymond.IsTrue(context) {
		return options.Inverse()
	}
	var out strings.Builder
	emit := func(ctx any, n, i int, key any) {
		frame := options.NewDataFrame()
		frame.Set("index", i)
		frame.Set("first", i == 0)
		frame.Set("last", i == n-1)
		if key != nil {
			frame.Set("key", key)
		}
		s := options.FnCtxData(ctx, frame)
		b.spend(len(s))
		out.WriteString(s)
	}
	val := reflect.ValueOf(context)
	switch val.Kind() {
	case reflect.Array, reflect.Slice:
		for i := 0; i < val.Len(); i++ {
			emit(val.Index(i).Interface(), val.Len(), i, nil)
		}
	case reflect.Map:
		keys := val.MapKeys()
		sort.Slice(keys, func(i, j int) bool { return fmt.Sprint(keys[i].Interface()) < fmt.Sprint(keys[j].Interface()) })
		for i, k := range keys {
			emit(val.MapIndex(k).Interface(), len(keys), i, k.Interface())
		}
	}
	return raymond.SafeString(out.String())
}
