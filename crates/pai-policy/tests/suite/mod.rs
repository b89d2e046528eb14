mod detect;
mod rules;
