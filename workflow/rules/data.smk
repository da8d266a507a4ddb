# Data: the embedded demo's fastMRI-layout volumes, and slice extraction from
# fastMRI volumes (real or demo) into one HDF5 file per dataset and split.


# One rule per demo folder: each folder's volume list is fixed by the config,
# so Snakemake tracks every volume file, and changing one dataset's settings
# rebuilds only that dataset's folders. The extra evaluation volumes of snakemake
# resolution (after the tuning ones) are a rule of their own, so that changing
# resolution.n_eval leaves the grid's volumes untouched.
for _folder in plan.demo_folders().values():
    for _part, _files, _counts in _folder.parts():

        rule:
            name:
                f"demo_volumes_{_folder.name}{_part}"
            output:
                [str(p) for p in _files],
            log:
                f"{LOGS}/demo_volumes/{_folder.name}{_part}.log",
            conda:
                "../envs/patchpnp.yaml"
            threads: 1
            resources:
                mem_mb=4000,
                runtime=20,
            params:
                out_dir=lambda wc, output: os.path.dirname(output[0]),
                layout=_folder.layout,
                counts=_counts,
                demo=DATA.get("demo"),
                edge_slices=DATA["edge_slices"],
                seed=config["seed"],
                code=command_code("demo"),
            shell:
                "patchpnp demo {params.out_dir} --layout {params.layout} {params.counts}"
                " --seed {params.seed} --recon-size {params.demo[recon_size]}"
                " --train-slices {params.demo[train_slices]}"
                " --eval-slices {params.demo[eval_slices]} --edge-slices {params.edge_slices}"
                " --coils {params.demo[coils]}"
                " --readout-oversampling {params.demo[readout_oversampling]}"
                " --noise {params.demo[noise]} > {log} 2>&1"


rule extract_shard:
    input:
        shard_volumes,
    output:
        temp(layout.SHARD),
    log:
        f"{LOGS}/extract/{{dataset}}_{{split}}_{{shard}}.log",
    benchmark:
        f"{LOGS}/benchmarks/extract/{{dataset}}_{{split}}_{{shard}}.tsv"
    conda:
        "../envs/patchpnp.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        layout=lambda wc: plan.dataset_spec(wc.dataset)["layout"],
        root=str(plan.root),
        image_size=DATA["image_size"],
        crop_size=DATA["crop_size"],
        edge_slices=DATA["edge_slices"],
        percentile=DATA["scale_percentile"],
        code=command_code("extract"),
    shell:
        "patchpnp extract {input:q} --split {wildcards.split} --output {output:q}"
        " --image-size {params.image_size} --crop-size {params.crop_size}"
        " --edge-slices {params.edge_slices} --scale-percentile {params.percentile}"
        " --layout {params.layout} --root {params.root:q} > {log} 2>&1"


rule merge_split:
    input:
        split_shards,
    output:
        layout.SPLIT,
    log:
        f"{LOGS}/merge/{{dataset}}_{{split}}.log",
    conda:
        "../envs/patchpnp.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        code=command_code("merge"),
    shell:
        "patchpnp merge {input:q} --output {output:q} > {log} 2>&1"


rule data:
    input:
        plan.split_files(),
