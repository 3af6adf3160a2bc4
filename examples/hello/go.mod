module github.com/redblack/redblack/examples/hello

go 1.26.8
