package data

import (
	"context"
	"testing"
)

func TestBenchLoaderStages(t *testing.T) {
	f := loadJPEGFixtures(t)
	for _, env := range []string{"turbo", "go"} {
		if env == "turbo" && loadTurboJPEG() != nil {
			continue
		}
		_, train, _ := fixtureFolder(t, f, env)
		for _, eval := range []bool{false, true} {
			res, err := BenchLoader(context.Background(), train, LoaderBenchConfig{Workers: 2, Batch: 2, Eval: eval})
			if err != nil {
				t.Fatal(err)
			}
			st := res.Stages
			if res.Images != 4 || st.Images != 4 || res.Seconds <= 0 {
				t.Errorf("%s eval=%v: %d images timed, %d through the stage clock, %gs", env, eval, res.Images, st.Images, res.Seconds)
			}
			if st.Read <= 0 || st.Decode <= 0 || st.Resize <= 0 {
				t.Errorf("%s eval=%v: stage times %+v", env, eval, st)
			}
		}
	}
}
