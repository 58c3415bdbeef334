//go:build !cgo

package data

import "errors"

// Without cgo there is no dlopen, and so no libjpeg-turbo.

var turboJPEGLib = "libturbojpeg.so.0"

func dlopenTurboJPEG() error {
	return errors.New(turboJPEGLib + " not loadable (built without cgo)")
}

func turboScalingFactors() []scaleFactor { return nil }

type turboDecoder struct{}

func newTurboDecoder() (*turboDecoder, error) {
	return nil, errors.New("libjpeg-turbo is not available without cgo")
}

func (*turboDecoder) header([]byte) (w, h int, rgbOK bool, err error) {
	panic("data: libjpeg-turbo is not available without cgo")
}

func (*turboDecoder) decode([]byte, []uint8, int, int) error {
	panic("data: libjpeg-turbo is not available without cgo")
}
