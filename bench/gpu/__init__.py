"""The CUDA benchmark kit: pack.sh packs the service, its benchmarks, the wheels a bare GPU box
lacks and tiny.en into two folders under the device tool's 64 MiB; drive.py runs there."""
