//! Removable units: the smallest sets of groups one greedy removal takes, their order within a
//! step, and their effect on the model's sizes.
//!
//! A unit is one FFN neuron (or `ffn_multiple` of them), one query head from every key/value
//! group of a layer, one key/value group, or one layer. Within a layer, units are listed
//! lowest score first, and a layer never lists the unit that would remove its last group.

use crate::error::{Error, Result};
use crate::model::config::Config;
use crate::model::dense::DenseModel;
use crate::prune::structured::{Ratio, Structure};

#[derive(Debug, Clone, PartialEq)]
pub struct Unit {
    /// Current index of the layer.
    pub layer: usize,
    /// The groups removed: neuron, query head or key/value head indices of the layer, or the
    /// layer itself for `Structure::Layers`.
    pub members: Vec<usize>,
    /// Sum of the members' scores.
    pub score: f64,
}

/// Lists the removable units of layer `l`, lowest score first. `scores` has one entry per
/// group of the layer: per neuron, per query head, per key/value group, or one for the layer.
pub fn layer_units(
    config: &Config,
    structure: Structure,
    l: usize,
    scores: &[f64],
    ffn_multiple: usize,
) -> Vec<Unit> {
    let dims = config.layers[l];
    let order = |n: usize| -> Vec<usize> {
        let mut index: Vec<usize> = (0..n).collect();
        index.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]).then(a.cmp(&b)));
        index
    };
    let unit = |members: Vec<usize>| Unit {
        layer: l,
        score: members.iter().map(|&i| scores[i]).sum(),
        members,
    };
    match structure {
        Structure::Ffn => {
            let order = order(dims.ffn_dim);
            let mut units = Vec::new();
            let mut width = dims.ffn_dim;
            let mut start = 0;
            // The first unit rounds the width down to a multiple; the layer keeps at least
            // one multiple (or its whole width when that is smaller).
            while width > ffn_multiple {
                let size = if width % ffn_multiple == 0 {
                    ffn_multiple
                } else {
                    width % ffn_multiple
                };
                units.push(unit(order[start..start + size].to_vec()));
                start += size;
                width -= size;
            }
            units
        }
        Structure::Heads => {
            let n_rep = dims.n_heads / dims.n_kv_heads;
            let per_group: Vec<Vec<usize>> = (0..dims.n_kv_heads)
                .map(|g| {
                    let mut heads: Vec<usize> = (g * n_rep..(g + 1) * n_rep).collect();
                    heads.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]).then(a.cmp(&b)));
                    heads
                })
                .collect();
            // Unit k takes the k-th lowest query head of every group.
            (0..n_rep - 1)
                .map(|k| unit(per_group.iter().map(|heads| heads[k]).collect()))
                .collect()
        }
        Structure::KvGroups => {
            let order = order(dims.n_kv_heads);
            order[..dims.n_kv_heads - 1]
                .iter()
                .map(|&g| unit(vec![g]))
                .collect()
        }
        Structure::Layers => vec![Unit {
            layer: l,
            members: vec![l],
            score: scores[0],
        }],
    }
}

/// Orders the units of all layers for removal. `per_layer[l]` is layer `l`'s list from
/// `layer_units`, `totals[l]` the sum of all of its groups' scores, `removed_fraction[l]` the
/// fraction of the layer's original groups already removed, and `group_fraction[l]` the
/// fraction of the layer's original groups one of its units removes.
///
/// Global: units are merged by score, divided by the layer's total unless `comparable`, so a
/// unit competes by its share of its layer's importance. Uniform: the next unit always comes
/// from the layer that would have the smallest removed fraction after taking it. This keeps
/// the fractions of all layers within one unit of each other, and ties go to the lower share.
/// `Structure::Layers` keeps at least one layer.
pub fn order_units(
    structure: Structure,
    ratio: Ratio,
    comparable: bool,
    per_layer: Vec<Vec<Unit>>,
    totals: &[f64],
    removed_fraction: &[f64],
    group_fraction: &[f64],
) -> Vec<Unit> {
    let key = |u: &Unit| -> f64 {
        if comparable || totals[u.layer] <= 0.0 {
            u.score
        } else {
            u.score / totals[u.layer]
        }
    };
    let mut ordered = Vec::new();
    match ratio {
        Ratio::Global => {
            let mut all: Vec<Unit> = per_layer.into_iter().flatten().collect();
            // A stable sort keeps each layer's own order among equal keys.
            all.sort_by(|a, b| key(a).total_cmp(&key(b)).then(a.layer.cmp(&b.layer)));
            ordered = all;
            if structure == Structure::Layers && !ordered.is_empty() {
                ordered.pop();
            }
        }
        Ratio::Uniform => {
            let mut next = vec![0usize; per_layer.len()];
            let mut fraction = removed_fraction.to_vec();
            loop {
                let best = (0..per_layer.len())
                    .filter(|&l| next[l] < per_layer[l].len())
                    .min_by(|&a, &b| {
                        let fa = fraction[a] + group_fraction[a];
                        let fb = fraction[b] + group_fraction[b];
                        // Fractions closer than 1e-9 count as equal, so float rounding does
                        // not decide between layers of the same size.
                        if (fa - fb).abs() > 1e-9 {
                            fa.total_cmp(&fb)
                        } else {
                            key(&per_layer[a][next[a]])
                                .total_cmp(&key(&per_layer[b][next[b]]))
                                .then(a.cmp(&b))
                        }
                    });
                let Some(l) = best else { break };
                ordered.push(per_layer[l][next[l]].clone());
                fraction[l] += group_fraction[l];
                next[l] += 1;
            }
        }
    }
    ordered
}

/// Returns the configuration after removing `units` (which must come from the current
/// model's lists), without touching any weights.
pub fn config_after(config: &Config, structure: Structure, units: &[Unit]) -> Config {
    let mut after = config.clone();
    let mut removed_layers = Vec::new();
    for unit in units {
        let dims = &mut after.layers[unit.layer];
        match structure {
            Structure::Ffn => dims.ffn_dim -= unit.members.len(),
            Structure::Heads => dims.n_heads -= unit.members.len(),
            Structure::KvGroups => {
                let n_rep =
                    config.layers[unit.layer].n_heads / config.layers[unit.layer].n_kv_heads;
                dims.n_kv_heads -= 1;
                dims.n_heads -= n_rep;
            }
            Structure::Layers => removed_layers.push(unit.layer),
        }
    }
    if !removed_layers.is_empty() {
        after.layers = after
            .layers
            .iter()
            .enumerate()
            .filter(|(l, _)| !removed_layers.contains(l))
            .map(|(_, d)| *d)
            .collect();
    }
    after
}

/// Removes `units` from `model`. Returns, per current layer index, the number of groups
/// removed from it.
pub fn apply_units(
    model: &mut DenseModel,
    structure: Structure,
    units: &[Unit],
) -> Result<Vec<usize>> {
    let n_layers = model.layers.len();
    let mut removed: Vec<Vec<usize>> = vec![Vec::new(); n_layers];
    for unit in units {
        if unit.layer >= n_layers {
            return Err(Error::invalid_argument(
                "unit",
                format!(
                    "layer {} is out of range, the model has {n_layers} layers",
                    unit.layer
                ),
            ));
        }
        removed[unit.layer].extend(&unit.members);
    }
    let counts: Vec<usize> = removed.iter().map(Vec::len).collect();
    if structure == Structure::Layers {
        let keep: Vec<usize> = (0..n_layers).filter(|l| removed[*l].is_empty()).collect();
        model.remove_layers(&keep)?;
        return Ok(counts);
    }
    for (l, members) in removed.iter().enumerate() {
        if members.is_empty() {
            continue;
        }
        let dims = model.layers[l].dims;
        let n = match structure {
            Structure::Ffn => dims.ffn_dim,
            Structure::Heads => dims.n_heads,
            Structure::KvGroups => dims.n_kv_heads,
            Structure::Layers => unreachable!("handled above"),
        };
        let keep: Vec<usize> = (0..n).filter(|i| !members.contains(i)).collect();
        match structure {
            Structure::Ffn => model.remove_ffn_neurons(l, &keep)?,
            Structure::Heads => model.remove_query_heads(l, &keep)?,
            Structure::KvGroups => model.remove_kv_groups(l, &keep)?,
            Structure::Layers => unreachable!("handled above"),
        }
    }
    Ok(counts)
}

/// Number of groups of `structure` that layer `l` of `config` has.
pub fn n_groups(config: &Config, structure: Structure, l: usize) -> usize {
    let dims = config.layers[l];
    match structure {
        Structure::Ffn => dims.ffn_dim,
        Structure::Heads => dims.n_heads,
        Structure::KvGroups => dims.n_kv_heads,
        Structure::Layers => 1,
    }
}
