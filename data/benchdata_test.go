package data

import (
	"context"
	"fmt"
	"path/filepath"
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

// TestBenchLoaderShards: a shard set is timed through its stream loader,
// with the decode and resize stages of its transform.
func TestBenchLoaderShards(t *testing.T) {
	root := t.TempDir()
	for i := range 10 {
		split := "train"
		if i >= 8 {
			split = "val"
		}
		writeFile(t, filepath.Join(root, split, fmt.Sprintf("c%d", i%2), fmt.Sprintf("%d.jpg", i)), gradientJPEG(t, 30, 24))
	}
	tr, _, err := OpenShards(writeTestShards(t, root, ShardOptions{}), Options{ImageSize: 16})
	if err != nil {
		t.Fatal(err)
	}
	res, err := BenchLoader(context.Background(), tr, LoaderBenchConfig{Workers: 2, Batch: 4})
	if err != nil {
		t.Fatal(err)
	}
	if st := res.Stages; res.Images != 8 || st.Images != 8 || st.Decode <= 0 || st.Resize <= 0 || res.Decoder == "" {
		t.Errorf("%d images, decoder %q, stages %+v", res.Images, res.Decoder, st)
	}
}
